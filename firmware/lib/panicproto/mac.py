"""HMAC-SHA256 (RFC 2104) on every Python we run on, and a constant-time compare.

CircuitPython has no ``hmac`` module and its ``hashlib`` only offers
``hashlib.new("sha256", data)``; MicroPython only offers ``hashlib.sha256(data)``;
CPython has both. ``sha256()`` hides the difference.

On CPython (the gateway, the tools) the same API is the stdlib's C code
(``hmac.digest``, ``hmac.compare_digest``): under a third of the portable code's time per
tag (bench/bench_protocol.py measures both). Boards run the portable ``_hmac`` and
``_equal``. The choice is made once, at import; the ``hmac`` import sits behind the
interpreter check, so a board never reaches it.
"""

import hashlib
import sys

_BLOCK = 64
if hasattr(hashlib, "sha256"):
    _sha = hashlib.sha256
else:  # CircuitPython

    def _sha(data=b""):
        return hashlib.new("sha256", data)


def sha256(data):
    """SHA-256 digest (32 bytes) of ``data``."""
    return _sha(data).digest()


def _hmac(key, data):
    """The portable HMAC-SHA256 (boards)."""
    if len(key) > _BLOCK:
        key = sha256(key)
    key = key + bytes(_BLOCK - len(key))
    inner = _sha(bytes(k ^ 0x36 for k in key))
    inner.update(data)
    outer = _sha(bytes(k ^ 0x5C for k in key))
    outer.update(inner.digest())
    return outer.digest()


def _equal(a, b):
    """The portable constant-time compare (boards)."""
    if len(a) != len(b):
        return False
    diff = 0
    for i in range(len(a)):
        diff |= a[i] ^ b[i]
    return diff == 0


hmac_sha256 = _hmac  # full 32-byte HMAC-SHA256 of ``data`` under ``key`` (any length)
equal = _equal  # compare two byte strings in time that depends only on their lengths
if sys.implementation.name == "cpython":
    import hmac

    equal = hmac.compare_digest

    def hmac_sha256(key, data):
        return hmac.digest(key, data, "sha256")
