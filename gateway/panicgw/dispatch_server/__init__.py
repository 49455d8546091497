"""The reference dispatch receiver: stands apart from the daemon, which never imports it."""
