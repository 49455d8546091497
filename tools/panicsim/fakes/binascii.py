"""``binascii`` as CircuitPython has it: base64, hex and crc32, no ``crc_hqx`` (so the
firmware runs panicproto.crc's portable code here, as on a board)."""

import binascii as _host
from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    return SimpleNamespace(a2b_base64=_host.a2b_base64, b2a_base64=_host.b2a_base64,
                           crc32=_host.crc32, hexlify=_host.hexlify,
                           unhexlify=_host.unhexlify)
