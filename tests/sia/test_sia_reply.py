"""Replies judged against the message they answer: pysiaalarm's own ACK/NAK/DUH, and each way
a reply can fail to be ours."""

from __future__ import annotations

import time

import pytest
from pysiaalarm import SIAAccount, SIAEvent

from panicgw.forward.sia.crypto import seal
from panicgw.forward.sia.frame import build, wrap
from panicgw.forward.sia.message import Message, from_payload, null_message
from panicgw.forward.sia.reply import Ack, Duh, Expected, Nak, Rejected, judge

from .siakit import ACCOUNT, TEXT_KEYS, frame, payload, stamp

R, L = 0x12, 3


def pysia_answer(raw: bytes, key: str | None, timeband: tuple[int, int] | None = None) -> bytes:
    """pysiaalarm's reply to one of our frames."""
    account = SIAAccount(ACCOUNT, key, allowed_timeband=timeband)
    event = SIAEvent.from_line(raw.decode().strip(), {ACCOUNT: account})
    return event.create_response()


def sent(seq: int = 7, key: bytes | None = None, now: float | None = None,
         message: Message | None = None) -> tuple[bytes, Expected]:
    now = time.time() if now is None else now
    message = message or from_payload(payload("panic"), account=ACCOUNT, zone=1)
    raw = build(message, seq, receiver=R, line=L, now=now, key=key)
    return raw, Expected(seq, R, L, ACCOUNT, key, now)


@pytest.mark.parametrize("bits", [None, 128, 192, 256])
def test_pysiaalarm_ack_is_delivered(bits: int | None) -> None:
    text = TEXT_KEYS[bits] if bits else None
    raw, exp = sent(key=text.encode() if text else None)
    verdict = judge(pysia_answer(raw, text), exp)
    assert isinstance(verdict, Ack) and verdict.kind == "ACK"
    if bits:  # the encrypted ACK carries the receiver's time
        assert verdict.receiver_time is not None and abs(verdict.receiver_time - exp.now) < 5


def test_pysiaalarm_nak_says_its_time() -> None:
    raw, exp = sent(now=time.time() + 3600)  # our clock an hour fast
    answer = pysia_answer(raw, None, timeband=(40, 20))
    verdict = judge(answer, exp)
    assert isinstance(verdict, Nak)
    assert verdict.receiver_time is not None and abs(verdict.receiver_time - time.time()) < 5


def test_pysiaalarm_duh_for_an_unknown_code() -> None:
    message = Message("SIA-DCS", ACCOUNT, f"#{ACCOUNT}|Nri1/ZX001")
    raw, exp = sent(message=message)
    assert isinstance(judge(pysia_answer(raw, None), exp), Duh)


def test_pysiaalarm_format_nak_with_l_before_r() -> None:
    assert isinstance(judge(frame('"NAK"0000L0R0A0[]_12:00:00,05-01-2024'),
                            Expected(1, R, L, ACCOUNT)), Nak)


EXP = Expected(7, R, L, ACCOUNT)


@pytest.mark.parametrize(("body", "reason"), [
    ('"ACK"0008R12L3#1234[]', "sequence"),
    ('"ACK"0007R13L3#1234[]', "receiver"),
    ('"ACK"0007R12L4#1234[]', "line"),
    ('"ACK"0007R12L3#1235[]', "account"),
    ('"ACK"0007L3#1234[]', "receiver"),
    ('"ACK"0007R12#1234[]', "line"),
    ('"ACK"0007R12L3[]', "account"),
    ('"ACK"0007R12L3#1234', "format"),
    ('"ACK"0007R12L3#1234[]junk', "format"),
    ('"ACK"0007R12L3#1234[]_99:00:00,05-01-2024', "timestamp"),
    ('"YES"0007R12L3#1234[]', "format"),
    ('"*ACK"0007R12L3#1234[00112233445566778899AABBCCDDEEFF', "encrypted"),
    ('"DUH"0008R12L3#1234[]', "sequence"),
    ('"DUH"0007R12L3#9999[]', "account"),
    ('"NAK"0000R0L0A0[', "format"),
])
def test_mismatched_replies_are_rejected(body: str, reason: str) -> None:
    verdict = judge(frame(body), EXP)
    assert isinstance(verdict, Rejected) and verdict.reason == reason, verdict


@pytest.mark.parametrize("body", [
    '"ACK"0007R12L3#1234[]',
    '"ACK"0007R012L03#1234[]',  # numbers compare as numbers
    '"ACK"0007R12L3#1234[]_12:00:00,05-01-2024',
    '"ACK"0007R12L3#1234[][K0011]',
    '"RSP"0007R12L3#1234[]',
])
def test_matching_plain_replies_are_delivered(body: str) -> None:
    assert isinstance(judge(frame(body), EXP), Ack)


@pytest.mark.parametrize("body", ['"DUH"0007R12L3#1234[]', '"DUH"0000R0L0[]', '"DUH"0007[]'])
def test_duh_is_refused(body: str) -> None:
    assert isinstance(judge(frame(body), EXP), Duh)


KEY = bytes(range(16))


def sealed_ack(now: float, key: bytes = KEY, seq: str = "0007", inner: str = "") -> bytes:
    return wrap(f'"*ACK"{seq}R12L3#1234[' + seal(key, f"{inner}]{stamp(now)}"))


def test_encrypted_ack_checks() -> None:
    now = 1_714_564_800.0
    exp = Expected(7, R, L, ACCOUNT, KEY, now)
    assert isinstance(judge(sealed_ack(now), exp), Ack)
    assert isinstance(judge(sealed_ack(now, inner="#1234|"), exp), Ack)
    cases = {
        "not_encrypted": frame('"ACK"0007R12L3#1234[]'),  # forgeable without the key
        "decrypt": sealed_ack(now, key=bytes(16)),
        "stale": sealed_ack(now - 7200),  # an old ACK replayed
        "account": sealed_ack(now, inner="#9999|"),
        "sequence": sealed_ack(now, seq="0008"),
    }
    for reason, raw in cases.items():
        verdict = judge(raw, exp)
        assert isinstance(verdict, Rejected) and verdict.reason == reason, (reason, verdict)
    assert isinstance(judge(sealed_ack(now - 7200), Expected(7, R, L, ACCOUNT, KEY, now,
                                                             window_s=0)), Ack)


def test_judge_never_raises_on_odd_input() -> None:
    for raw in (b"", b"\n\r", b"\xff" * 40, b"x" * 5000, bytearray(b"\n0000"),
                "not bytes"):
        verdict = judge(raw, EXP)  # type: ignore[arg-type]
        assert isinstance(verdict, Rejected)


def test_a_nak_never_delivers_and_a_null_ack_matches() -> None:
    raw, exp = sent(message=null_message(ACCOUNT))
    assert isinstance(judge(pysia_answer(raw, None), exp), Ack)
