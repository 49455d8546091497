"""Panic-button wire protocol, shared by the firmware, the gateway and the tools.

This package runs unchanged on CPython, MicroPython and CircuitPython. Import the
submodule you need (``panicproto.frames``, ``panicproto.link``...) so a device only
loads what it uses. docs/protocol.md is the specification.
"""

PROTOCOL_VERSION = 1
__version__ = "0.1.0"
