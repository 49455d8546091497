"""The DC-09 frame around a message, and the check of a frame that comes back.

``<LF><crc><0LLL>"<id>"<seq>R<rcvr>L<line>#<acct>[<content><CR>``

- ``crc``: CRC-16/ARC (polynomial 0x8005 reflected, initial value 0) of everything from the
  first ``"`` up to the ``<CR>``, as 4 upper-case hex digits;
- ``0LLL``: the length of that same part, ``0`` and 3 hex digits;
- ``id``: ``SIA-DCS``, ``ADM-CID`` or ``NULL``, with ``*`` in front when the content is
  encrypted (then the content is hex: ``crypto.seal`` of the plain content);
- ``seq``: 4 decimal digits 0001..9999; ``R``/``L``: receiver and line number, 1-6 hex
  digits each (always sent: some receivers echo a missing ``R`` as garbage).
"""

from __future__ import annotations

import random

from crc import Calculator, Configuration

from panicgw.forward.sia.crypto import seal
from panicgw.forward.sia.message import Message, check_account, format_time
from panicgw.forward.sia.sequence import check_sequence

LF = b"\n"
CR = b"\r"
MAX_LENGTH = 0xFFF
MAX_ID = 0xFFFFFF  # R and L: 1-6 hex digits
CRC16_ARC = Configuration(width=16, polynomial=0x8005, init_value=0, final_xor_value=0,
                          reverse_input=True, reverse_output=True)
_CRC = Calculator(CRC16_ARC, optimized=True)


class FrameError(ValueError):
    """Not a DC-09 frame; ``reason`` is a short counter key (``crc``, ``length``, ...)."""

    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


def crc16(data: bytes) -> int:
    return int(_CRC.checksum(data))


def check_id(value: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_ID:
        raise FrameError(f"bad_{what}", f"{what} number is 0..{MAX_ID:X} (hex), got {value!r}")
    return value


def wrap(body: str) -> bytes:
    """``<LF><crc><0LLL><body><CR>``."""
    raw = body.encode("ascii")
    if len(raw) > MAX_LENGTH:
        raise FrameError("too_long", f"{len(raw)} bytes, the length field holds {MAX_LENGTH}")
    return LF + f"{crc16(raw):04X}0{len(raw):03X}".encode() + raw + CR


def unwrap(raw: bytes) -> str:
    """The checked body of a received frame (from ``"`` to before ``<CR>``); FrameError when
    the CRC, the length or the shape is wrong."""
    core = raw.strip(b"\r\n")
    if len(core) < 9:
        raise FrameError("short", f"{len(core)} bytes")
    try:
        text = core.decode("ascii")
    except UnicodeDecodeError:
        raise FrameError("not_ascii") from None
    crc, length, body = text[:4], text[4:8], text[8:]
    if not all(c in "0123456789ABCDEFabcdef" for c in crc + length):
        raise FrameError("format", "CRC and length must be 8 hex digits")
    if int(length, 16) != len(body):
        raise FrameError("length", f"says {int(length, 16)}, has {len(body)}")
    if int(crc, 16) != crc16(body.encode("ascii")):
        raise FrameError("crc", f"says {crc.upper()}, computed {crc16(body.encode()):04X}")
    return body


def header(kind: str, seq: int, receiver: int, line: int, account: str,
           encrypted: bool) -> str:
    """``"<*id>"<seq>R<rcvr>L<line>#<acct>[``."""
    star = "*" if encrypted else ""
    return (f'"{star}{kind}"{check_sequence(seq):04d}R{check_id(receiver, "receiver"):X}'
            f"L{check_id(line, 'line'):X}#{check_account(account)}[")


def build(message: Message, seq: int, *, receiver: int, line: int, now: float,
          key: bytes | None = None, rng: random.Random | None = None) -> bytes:
    """The frame for ``message`` stamped ``now`` (Unix seconds, the receiver's clock as best
    we know it), encrypted when ``key`` is given. ``rng`` only for reproducible examples."""
    content = message.content(format_time(now))
    head = header(message.kind, seq, receiver, line, message.account, key is not None)
    return wrap(head + (seal(key, content, rng) if key is not None else content))
