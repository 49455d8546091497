"""End to end against pysiaalarm's receiver (Home Assistant's SIA integration), TCP and UDP,
plain and AES-128/192/256: every message we can send arrives with the right code, account,
sequence and xdata, and its ACK is taken as delivered."""

from __future__ import annotations

import time

import pytest

from panicgw.forward.payload import EVENTS
from panicgw.forward.sia.client import DELIVERED, REFUSED, RETRY, Transmitter
from panicgw.forward.sia.message import ADM_CID, SIA_DCS, SIA_DCS_CODES, Message, from_payload

from .siakit import ACCOUNT, TEXT_KEYS, PySiaReceiver, payload, run, settings

KINDS = [(e, {}) for e in sorted(EVENTS)] + [("panic", {"silent": False})]


def _message(body: dict, fmt: str, n: int, zone: int) -> Message:
    # pysiaalarm reads only one xdata block after an ADM-CID message: one field each time
    xdata = ["X", "Y", "I"] if fmt == SIA_DCS else [["X", "Y", "I", "S"][n % 4]]
    return from_payload(body, account=ACCOUNT, zone=zone, fmt=fmt, xdata=xdata)


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
@pytest.mark.parametrize("bits", [None, 128, 192, 256])
def test_every_message_is_delivered_and_read_right(protocol: str, bits: int | None) -> None:
    text_key = TEXT_KEYS[bits] if bits else None

    async def scenario() -> list:
        async with PySiaReceiver(protocol, text_key) as centre:
            tx = Transmitter(settings(centre.endpoint,
                                      key=text_key.encode() if text_key else None))
            sent: list[tuple[int, Message, dict, int]] = []
            for fmt in (SIA_DCS, ADM_CID):
                for n, (event, extra) in enumerate(KINDS):
                    body = payload(event, **extra)
                    zone = 0 if body["device"] is None else n + 1
                    m = _message(body, fmt, n, zone)
                    seq = tx.next_sequence()
                    result = await tx.deliver(m, seq)
                    assert result.outcome == DELIVERED, result
                    assert result.seq == seq and len(result.exchanges) == 1
                    sent.append((seq, m, body, zone))
            link = await tx.link_test()
            assert link.delivered and tx.link_ok
            tx.close()
            events = await centre.wait_events(len(sent) + 1)
        return [sent, events]

    sent, events = run(scenario())
    assert len(events) == len(sent) + 1
    for ev, (seq, m, body, zone_no) in zip(events, sent, strict=False):
        assert ev.encrypted == bool(bits)
        assert (ev.message_type.value, ev.sequence, ev.account, ev.receiver, ev.line) == (
            m.kind, f"{seq:04d}", ACCOUNT, "R12", "L3")
        assert [(x.identifier, x.value) for x in ev.extended_data or []] == list(m.xdata)
        assert abs(ev.timestamp.timestamp() - time.time()) < 30
        code, qualifier = body["contact_id"]["code"], body["contact_id"]["qualifier"]
        zone = f"{zone_no:03d}"
        if m.kind == SIA_DCS:
            assert (ev.code, ev.ri, ev.message) == (SIA_DCS_CODES[(code, qualifier)], "1", zone)
        else:
            assert (ev.event_qualifier, ev.event_type, ev.partition, ev.ri) == (
                str(qualifier), f"{code:03d}", "01", zone)
    null = events[-1]
    assert (null.message_type.value, null.code, null.sequence) == (
        "NULL", "RP", f"{sent[-1][0] + 1:04d}")


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_nak_for_a_skewed_clock_is_corrected_and_resent(protocol: str) -> None:
    """pysiaalarm NAKs a timestamp outside -40..+20 s of its clock and says its time."""

    async def scenario() -> None:
        async with PySiaReceiver(protocol) as centre:
            tx = Transmitter(settings(centre.endpoint), clock=lambda: time.time() + 3600)
            m = from_payload(payload("panic"), account=ACCOUNT, zone=1)
            result = await tx.deliver(m, tx.next_sequence())
            assert result.outcome == DELIVERED
            assert [x.outcome for x in result.exchanges] == ["nak", "ack"]
            assert {x.sent.split(b'"')[2][:4] for x in result.exchanges} == {b"0001"}
            offset = tx.stats()["endpoints"][0]["clock_offset_s"]
            assert -3602 < offset < -3598
            # the next message goes out right first time
            again = await tx.deliver(m, tx.next_sequence())
            assert [x.outcome for x in again.exchanges] == ["ack"]
            tx.close()
            assert len(await centre.wait_events(2)) == 2

    run(scenario())


def test_duh_for_a_code_the_receiver_does_not_know_is_refused() -> None:
    async def scenario() -> None:
        async with PySiaReceiver("tcp") as centre:
            tx = Transmitter(settings(centre.endpoint))
            m = Message(SIA_DCS, ACCOUNT, f"#{ACCOUNT}|Nri1/ZX001", (), "panic")
            result = await tx.deliver(m, tx.next_sequence())
            assert result.outcome == REFUSED and result.reason == "duh"
            assert not result.delivered and tx.refused == 1
            assert tx.stats()["last_refused"] == "panic seq 0001: DUH"
            assert tx.link_ok  # the receiver answered: the link is fine
            tx.close()
        assert centre.events == []

    run(scenario())


def test_adm_cid_with_two_xdata_blocks_is_not_taken_by_pysiaalarm() -> None:
    """pysiaalarm's ADM-CID pattern takes one xdata block; with two it answers a NAK (format
    error). Never delivered, never a loop: retried later (docs/sia.md says to set xdata)."""

    async def scenario() -> None:
        async with PySiaReceiver("tcp") as centre:
            tx = Transmitter(settings(centre.endpoint, tries=1))
            m = from_payload(payload("panic"), account=ACCOUNT, zone=1, fmt=ADM_CID,
                             xdata=["X", "Y"])
            result = await tx.deliver(m, tx.next_sequence())
            assert result.outcome == RETRY and result.reason == "nak"
            assert len(result.exchanges) == tx.max_nak_resends + 1
            tx.close()
        assert centre.events == []

    run(scenario())


def test_wrong_key_is_never_delivered() -> None:
    async def scenario() -> None:
        async with PySiaReceiver("tcp", TEXT_KEYS[128]) as centre:
            tx = Transmitter(settings(centre.endpoint, key=b"B" * 16, tries=1))
            result = await tx.deliver(from_payload(payload("panic"), account=ACCOUNT, zone=1),
                                      tx.next_sequence())
            assert result.outcome == RETRY
            tx.close()
        assert centre.events == []

    run(scenario())
