"""The receiver's reply, judged against the message it answers.

A reply is untrusted input from the network: :func:`judge` never raises and never calls a
reply "delivered" unless it is an ACK (or RSP) whose sequence number, receiver, line and
account are the ones we sent and, when we encrypt, whose encrypted part decrypts with our key
to the standard's shape with a timestamp near our (receiver-corrected) clock. Everything else
is a :class:`Rejected` with a short reason; the caller keeps waiting for the right reply or
sends again under the same sequence number.

- ``ACK``/``RSP``: ``"ACK"<seq>R<r>L<l>#<acct>[]`` (plain) or ``"*ACK"<seq>R<r>L<l>#<acct>[<hex>``
  whose plaintext is ``<pad>|]_<time>`` (pysiaalarm pads with zeros and no ``|``: accepted).
- ``NAK``: ``"NAK"0000R0L0A0[]_<time>``: the receiver refused our timestamp and says its own
  time; never encrypted, never tied to a sequence number. It never counts as delivered, so
  it is read loosely: its time corrects our clock, the message goes again.
- ``DUH``: the receiver cannot read or does not support the message: refused, not delivered.
  Accepted with our sequence number (and whatever it echoes of receiver, line and account
  matching ours) or with ``0000``: a receiver that could not read ours knows none of them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from panicgw.forward.sia.crypto import decrypt, unpad
from panicgw.forward.sia.frame import FrameError, unwrap
from panicgw.forward.sia.message import parse_time

_TS = r"_\d\d:\d\d:\d\d,\d\d-\d\d-\d{4}"
_HEAD = re.compile(r'"(\*?)(ACK|NAK|DUH|RSP)"(\d{4})')
_IDS = re.compile(r"(?:R([0-9A-Fa-f]{1,6}))?(?:L([0-9A-Fa-f]{1,6}))?(?:#([0-9A-Fa-f]{3,16}))?\[")
_NAK_REST = re.compile(rf"[RLA#0-9A-Fa-f]*\[[^\[\]]*\]({_TS})?")
_PLAIN_ACK = re.compile(rf"[^\[\]]*\]((?:\[[^\[\]]*\])*)({_TS})?")
_SEALED_ACK = re.compile(r"([0-9A-Fa-f]+)\]?")
_OPENED_ACK = re.compile(rf"(?:#([0-9A-Fa-f]{{3,16}})\|)?\]((?:\[[^\[\]]*\])*)({_TS})")
DEFAULT_WINDOW_S = 3600.0


@dataclass(frozen=True)
class Expected:
    """What the reply must match: the message as we sent it."""

    seq: int
    receiver: int
    line: int
    account: str
    key: bytes | None = None
    now: float | None = None  # our clock (receiver-corrected) when we sent it
    window_s: float = DEFAULT_WINDOW_S  # an encrypted ACK's time may differ this much; 0: off


@dataclass(frozen=True)
class Ack:
    """Delivered: the receiver has the message."""

    kind: str  # "ACK" | "RSP"
    receiver_time: float | None
    xdata: tuple[str, ...]
    raw: bytes


@dataclass(frozen=True)
class Nak:
    """The receiver refused our timestamp; ``receiver_time`` is its clock when it said so."""

    receiver_time: float | None
    raw: bytes


@dataclass(frozen=True)
class Duh:
    """The receiver does not understand the message: refused, never silently dropped."""

    raw: bytes


@dataclass(frozen=True)
class Rejected:
    """Not an answer to our message (or not a DC-09 reply at all)."""

    reason: str
    detail: str
    raw: bytes


Verdict = Ack | Nak | Duh | Rejected


def judge(raw: bytes, expected: Expected) -> Verdict:
    """Classify one received frame. Never raises."""
    try:
        return _judge(raw, expected)
    except Exception as e:  # the contract: hostile input is a Rejected, whatever it trips
        return Rejected("internal", f"{type(e).__name__}: {e}"[:200], raw)


def _split_xdata(blocks: str) -> tuple[str, ...]:
    return tuple(blocks[1:-1].split("][")) if blocks else ()


def _judge(raw: bytes, exp: Expected) -> Verdict:
    if not isinstance(raw, bytes | bytearray):
        return Rejected("format", "not bytes", b"")
    raw = bytes(raw)
    try:
        body = unwrap(raw)
    except FrameError as e:
        return Rejected(e.reason, e.detail, raw)
    head = _HEAD.match(body)
    if head is None:
        return Rejected("format", "not an ACK, NAK, DUH or RSP", raw)
    star, kind, seq = head.groups()
    rest = body[head.end():]
    if kind == "NAK":
        nak = _NAK_REST.fullmatch(rest)
        if nak is None:
            return Rejected("format", "malformed NAK", raw)
        stamp = nak.group(1)
        return Nak(parse_time(stamp) if stamp else None, raw)
    ids = _IDS.match(rest)
    if ids is None:
        return Rejected("format", "malformed receiver, line or account", raw)
    r, line, acct = ids.groups()
    duh_unread = kind == "DUH" and seq == "0000"
    if int(seq) != exp.seq and not duh_unread:
        return Rejected("sequence", f"{seq} answers another message than {exp.seq:04d}", raw)
    mismatch = None if duh_unread else _match_ids(r, line, acct, exp, required=kind != "DUH")
    if mismatch:
        return Rejected(mismatch, f"R{r} L{line} #{acct}", raw)
    if kind == "DUH":
        return Duh(raw)
    return _ack(kind, star == "*", rest[ids.end():], exp, raw)


def _match_ids(r: str | None, line: str | None, acct: str | None, exp: Expected,
               required: bool) -> str | None:
    """The reason the reply's receiver, line or account differ from ours (None: they match).
    A DUH may leave them out; an ACK must carry all three."""
    for reason, got, want in (("receiver", r, exp.receiver), ("line", line, exp.line)):
        if (got is None and required) or (got is not None and int(got, 16) != want):
            return reason
    if (acct is None and required) or (acct is not None
                                       and acct.upper() != exp.account.upper()):
        return "account"
    return None


def _ack(kind: str, sealed: bool, payload: str, exp: Expected, raw: bytes) -> Verdict:
    if exp.key is None:
        if sealed:
            return Rejected("encrypted", "an encrypted reply to a plain message", raw)
        m = _PLAIN_ACK.fullmatch(payload)
        if m is None:
            return Rejected("format", "malformed ACK data", raw)
        blocks, stamp = m.groups()
    else:
        if not sealed:  # anyone on the path can forge a plain one
            return Rejected("not_encrypted", "a plain ACK to an encrypted message", raw)
        m = _SEALED_ACK.fullmatch(payload)
        plain = decrypt(exp.key, m.group(1)) if m else None
        text = unpad(plain) if plain is not None else None
        opened = _OPENED_ACK.fullmatch(text) if text is not None else None
        if opened is None:
            return Rejected("decrypt", "does not decrypt to an ACK with our key", raw)
        inner_acct, blocks, stamp = opened.groups()
        if inner_acct is not None and inner_acct.upper() != exp.account.upper():
            return Rejected("account", f"encrypted part names #{inner_acct}", raw)
    when = parse_time(stamp) if stamp else None
    if stamp and when is None:
        return Rejected("timestamp", stamp, raw)
    if (exp.key is not None and exp.now is not None and exp.window_s > 0 and when is not None
            and abs(when - exp.now) > exp.window_s):
        return Rejected("stale", f"ACK time {stamp} is {when - exp.now:+.0f} s from ours", raw)
    return Ack(kind, when, _split_xdata(blocks or ""), raw)
