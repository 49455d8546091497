"""Link frames at and past the size limits, for the link tests of both ends
(tests/protocol/test_link_limits.py, tests/gateway/test_serial_link.py)."""

from __future__ import annotations

import struct

from hypothesis import strategies as st

from panicproto import link
from panicproto.crc import crc16

KINDS = sorted(link.TYPE_NAMES)
# Per-type limits beyond the decoder's: what the payload of that type may hold.
TYPE_LIMIT = {link.RX: 3 + link.MAX_RADIO, link.TX: link.MAX_RADIO}


def raw_wire(kind: int, seq: int, payload: bytes) -> bytes:
    """A link frame with a correct CRC and COBS, whatever its size (no limit checked)."""
    frame = bytes((kind, seq & 0xFF)) + payload
    frame += struct.pack(">H", crc16(frame))
    return b"\x00" + link.cobs_encode(frame) + b"\x00"


def sizes_around_limits() -> list[int]:
    out = set()
    for limit in (link.MAX_PAYLOAD, *TYPE_LIMIT.values()):
        out.update({limit - 1, limit, limit + 1, limit + 2})
    out.update({0, 1, 2, 3, 4, link.MAX_ENCODED, link.MAX_ENCODED + 1, 1024})
    return sorted(out)


SIZES = sizes_around_limits()


def payload_of(size: int, fill: int, zero_every: int) -> bytes:
    """``size`` bytes of ``fill``, with a zero every ``zero_every`` bytes (0: none). Zeros make
    COBS shorter, so a payload over MAX_PAYLOAD can hide under MAX_ENCODED."""
    b = bytearray([fill or 1]) * size
    if zero_every:
        for i in range(0, size, zero_every):
            b[i] = 0
    return bytes(b)


payloads = st.builds(payload_of, st.sampled_from(SIZES), st.integers(0, 255),
                     st.sampled_from([0, 1, 7, 254]))
