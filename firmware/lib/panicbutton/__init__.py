"""Button device logic: press classifier, counter, retry policy, transports.

Nothing here imports hardware modules; the glue passes a HAL object in.
"""
