"""Button device logic: press classifier, counter, retry policy, transports (no hardware imports)."""
