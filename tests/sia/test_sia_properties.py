"""Properties: any event we can send reads back right in pysiaalarm (plain and encrypted) and
its reply reads as delivered; no malformed or hostile reply ever crashes the reply parser or
reads as delivered."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime

from hypothesis import assume, given
from hypothesis import strategies as st
from pysiaalarm import SIAAccount, SIAEvent

from panicgw.forward.payload import EVENTS
from panicgw.forward.sia.frame import FrameError, build, unwrap, wrap
from panicgw.forward.sia.message import ADM_CID, SIA_DCS, SIA_DCS_CODES, from_payload
from panicgw.forward.sia.reply import Ack, Expected, judge

from .siakit import payload

hex_text = st.text(alphabet="0123456789ABCDEFabcdef", min_size=1)
accounts = st.from_regex(r"[0-9A-Fa-f]{3,16}", fullmatch=True)
# pysiaalarm takes a key as text used byte for byte (Home Assistant asks for hex digits)
text_keys = st.sampled_from([16, 24, 32]).flatmap(
    lambda n: st.text(alphabet="0123456789ABCDEFabcdef", min_size=n, max_size=n))
sites = st.fixed_dictionaries({
    "name": st.text(min_size=1, max_size=80).filter(str.strip),
    "kind": st.sampled_from(["shop", "home"]),
    "lat": st.floats(-90, 90, allow_nan=False), "lon": st.floats(-180, 180, allow_nan=False)})
XDATA = ("X", "Y", "I", "S")


@st.composite
def sendable(draw: st.DrawFn) -> dict:
    event = draw(st.sampled_from(sorted(EVENTS)))
    fmt = draw(st.sampled_from([SIA_DCS, ADM_CID]))
    fields = draw(st.permutations(XDATA).flatmap(lambda p: st.integers(0, 4).map(
        lambda n: p[:n])))
    if fmt == ADM_CID:  # pysiaalarm reads one xdata block after an ADM-CID message
        fields = fields[:1]
    body = payload(event, device_id=draw(st.integers(0, 0xFFFFFFFF)),
                   label=draw(st.text(max_size=100)), site=draw(sites),
                   **({"silent": draw(st.booleans())} if event == "panic" else {}))
    return {
        "message": from_payload(body, account=draw(accounts), zone=draw(st.integers(0, 999)),
                                fmt=fmt, xdata=fields),
        "payload": body,
        "seq": draw(st.integers(1, 9999)),
        "receiver": draw(st.integers(0, 0xFFFFFF)),
        "line": draw(st.integers(0, 0xFFFFFF)),
        "now": float(draw(st.integers(946_684_800, 4_102_444_799))),  # 2000..2099
        "key": draw(st.none() | text_keys),
    }


@given(sendable())
def test_every_message_reads_back_in_pysiaalarm(case: dict) -> None:
    m, key = case["message"], case["key"]
    raw = build(m, case["seq"], receiver=case["receiver"], line=case["line"], now=case["now"],
                key=key.encode() if key else None)
    account = SIAAccount(m.account, key, allowed_timeband=None)
    ev = SIAEvent.from_line(raw.decode("ascii").strip(), {m.account: account})
    assert ev.valid_message and int(ev.length, 16) == len(ev.full_message)
    assert ev.encrypted == bool(key)
    assert ev.message_type.value == m.kind
    assert (ev.sequence, ev.receiver, ev.line, ev.account) == (
        f"{case['seq']:04d}", f"R{case['receiver']:X}", f"L{case['line']:X}", m.account)
    cid = case["payload"]["contact_id"]
    zone = m.data[-3:]
    if m.kind == SIA_DCS:
        assert (ev.code, ev.ri, ev.message) == (
            SIA_DCS_CODES[(cid["code"], cid["qualifier"])], "1", zone)
    else:
        assert (ev.event_qualifier, ev.event_type, ev.partition, ev.ri) == (
            str(cid["qualifier"]), f"{cid['code']:03d}", "01", zone)
    got = [(x.identifier, x.value) for x in ev.extended_data or []]
    assert got == list(m.xdata)
    assert ev.timestamp == datetime.fromtimestamp(case["now"], UTC)
    # and pysiaalarm's answer is "delivered" for us
    now = time.time()
    reply = ev.create_response()
    verdict = judge(reply, Expected(case["seq"], case["receiver"], case["line"], m.account,
                                    key.encode() if key else None, now))
    assert isinstance(verdict, Ack), (reply, verdict)


EXP = Expected(7, 0x12, 3, "12AB")
SEALED_EXP = Expected(7, 0x12, 3, "12AB", b"K" * 16, time.time())


@given(st.binary(max_size=400))
def test_random_bytes_never_deliver(raw: bytes) -> None:
    for exp in (EXP, SEALED_EXP):
        assert not isinstance(judge(raw, exp), Ack)


def _names_us(body: str, exp: Expected) -> bool:
    m = re.match(r'"(\*?)(ACK|RSP)"(\d{4})R([0-9A-Fa-f]{1,6})L([0-9A-Fa-f]{1,6})'
                 r"#([0-9A-Fa-f]{3,16})\[", body)
    return bool(m) and int(m[3]) == exp.seq and int(m[4], 16) == exp.receiver and \
        int(m[5], 16) == exp.line and m[6].upper() == exp.account and \
        (m[1] == "*") == (exp.key is not None)


piece = st.sampled_from(['"', "*", "ACK", "RSP", "NAK", "DUH", "0007", "0008", "0000", "R12",
                         "R13", "L3", "L4", "#12AB", "#12ab", "#12AC", "[", "]", "|", "_",
                         "12:00:00,05-01-2024", "K", "00FF", "A0"])


@given(st.lists(piece, max_size=14), st.text(max_size=30))
def test_structured_hostile_replies_never_falsely_deliver(parts: list[str], tail: str) -> None:
    body = "".join(parts) + tail
    assume(body.isascii())
    for exp in (EXP, SEALED_EXP):
        verdict = judge(wrap(body), exp)
        if isinstance(verdict, Ack):
            assert exp.key is None and _names_us(body, exp), body


def _real_ack(encrypted: bool) -> tuple[bytes, Expected]:
    key = "K" * 16 if encrypted else None
    m = from_payload(payload("panic"), account="12AB", zone=1)
    now = time.time()
    raw = build(m, 7, receiver=0x12, line=3, now=now, key=key.encode() if key else None)
    ev = SIAEvent.from_line(raw.decode().strip(), {"12AB": SIAAccount("12AB", key, None)})
    return ev.create_response(), Expected(7, 0x12, 3, "12AB",
                                          key.encode() if key else None, now)


REAL = [_real_ack(False), _real_ack(True)]


@given(st.sampled_from(REAL), st.integers(0, 10_000), st.integers(0, 255), st.booleans())
def test_mutated_acks_never_deliver(real: tuple[bytes, Expected], where: int, value: int,
                                    fix_crc: bool) -> None:
    raw, exp = real
    assert isinstance(judge(raw, exp), Ack)
    original = unwrap(raw)
    i = where % len(raw)
    assume(raw[i] != value)
    mutated = raw[:i] + bytes([value]) + raw[i + 1:]
    if fix_crc:  # a forger who recomputes the CRC and the length
        try:
            mutated = wrap(mutated.strip(b"\r\n")[8:].decode("ascii"))
        except (UnicodeDecodeError, FrameError):
            return
    verdict = judge(mutated, exp)
    if isinstance(verdict, Ack):  # only a change that leaves every field as it was
        assert unwrap(mutated).upper() == original.upper(), mutated
