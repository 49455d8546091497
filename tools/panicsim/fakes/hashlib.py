"""``hashlib`` as CircuitPython has it: only ``new("sha1"|"sha256", data)``."""

import hashlib as _host
from types import SimpleNamespace


def _new(name: str, data: bytes = b""):
    if name not in ("sha1", "sha256"):
        raise ValueError("Unsupported hash algorithm")
    return _host.new(name, data)


def module(b) -> SimpleNamespace:
    return SimpleNamespace(new=_new)
