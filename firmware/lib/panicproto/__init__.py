"""Panic-button wire protocol, shared by the firmware, the gateway and the tools.

This package runs unchanged on CPython, MicroPython and CircuitPython. Import the
submodule you need (``panicproto.frames``, ``panicproto.link``...) so a device only
loads what it uses. docs/protocol.md is the specification.

The numbers every part shares live here, once: the frame types, the ACK statuses and the
counter's layout. ``panicproto.frames`` re-exports them (``frames.ALARM``), and device
logic that never encodes a frame (the button's classifier, counter and sending policy)
takes them from here without loading the codec (10 KB of a 64 KB heap on the MicroPython
VM).
"""

__version__ = "0.1.0"

# Uplink types.
ALARM = 1
CANCEL = 2
HEARTBEAT = 3
TEST = 4
TAMPER = 5
# Downlink types.
ACK = 8
RESYNC = 9
# ACK status.
STORED = 1
DELIVERED = 2


def make_counter(epoch, sequence):
    """Counter from a 16-bit boot epoch and a 16-bit in-RAM sequence."""
    return ((epoch & 0xFFFF) << 16) | (sequence & 0xFFFF)


def split_counter(counter):
    """(epoch, sequence) of a counter."""
    return counter >> 16, counter & 0xFFFF
