"""The boot report: one ``PANIC-BUTTON {json}`` line the installer tool parses."""

import json

PREFIX = "PANIC-BUTTON "


def line(fields):
    return PREFIX + json.dumps(fields)


def parse(text):
    """Fields of the first report line in ``text`` (console output), or None."""
    for ln in text.splitlines():
        ln = ln.strip()
        if ln.startswith(PREFIX + "{"):
            try:
                return json.loads(ln[len(PREFIX):])
            except ValueError:
                return None
    return None
