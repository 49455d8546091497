"""``os``: ``getenv`` reads the board's settings.toml; the file calls are the host's
(panicsim.console roots them at the board's drive for the REPL)."""

import os as _host
from types import SimpleNamespace

CIRCUITPY_VERSION = (9, 2, 1)


def module(b) -> SimpleNamespace:
    version = ".".join(str(v) for v in CIRCUITPY_VERSION)
    return SimpleNamespace(listdir=_host.listdir, stat=_host.stat, sep=_host.sep,
                           getenv=b.getenv, urandom=_host.urandom,
                           uname=lambda: ("sim", "sim", version, "sim", b.board_id))
