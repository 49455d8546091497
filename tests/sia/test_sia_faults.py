"""The transmitter when the receiver misbehaves: down, slow, NAKing with a skewed clock,
answering DUH, closing mid-message, hostile replies, lost datagrams, failover. Whatever
happens, a message keeps its one sequence number and nothing reads as delivered unless the
receiver said so. pysiaalarm cannot be slow, close mid-reply, NAK forever or send hostile
replies, so most cases here use the small scripted receiver of siakit (its replies written
from the standard); the receiver-down and failover cases use pysiaalarm."""

from __future__ import annotations

import asyncio
import time

import pytest

from panicgw.forward.sia.client import DELIVERED, REFUSED, RETRY, Transmitter
from panicgw.forward.sia.message import from_payload
from panicgw.forward.sia.sequence import SequenceCounter

from .siakit import (
    ACCOUNT,
    PySiaReceiver,
    ScriptedReceiver,
    ack,
    dead_endpoint,
    frame,
    header_fields,
    message_time,
    nak,
    payload,
    run,
    sequences_per_message,
    settings,
)

PANIC = from_payload(payload("panic"), account=ACCOUNT, zone=1)
TEST = from_payload(payload("test"), account=ACCOUNT, zone=2)


def one_seq_each(frames: list[bytes]) -> None:
    assert frames
    assert all(len(seqs) == 1 for seqs in sequences_per_message(frames).values())


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_receiver_down(protocol: str) -> None:
    heard: list[tuple[bool, str]] = []

    async def scenario() -> None:
        tx = Transmitter(settings(dead_endpoint(protocol)),
                         on_link=lambda ok, why: heard.append((ok, why)))
        t0 = time.monotonic()
        result = await tx.deliver(PANIC, tx.next_sequence())
        assert result.outcome == RETRY and result.reason == "connect"
        assert not result.delivered and result.endpoint is None
        assert time.monotonic() - t0 < 2  # refused at once, not waited out
        assert tx.link_ok is False and tx.stats()["link_down_since"] is not None
        tx.close()

    run(scenario())
    assert [ok for ok, _ in heard] == [False]


def test_failover_to_the_backup_and_back() -> None:
    primary = dead_endpoint()

    async def scenario() -> None:
        async with PySiaReceiver("tcp") as backup:
            tx = Transmitter(settings(primary, backup=backup.endpoint))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED and result.endpoint == str(backup.endpoint)
            assert tx.stats()["active"] == str(backup.endpoint)
            second = await tx.deliver(TEST, tx.next_sequence())  # straight to the backup
            assert second.endpoint == str(backup.endpoint)
            async with PySiaReceiver("tcp", port=primary.port) as centre:  # primary is back
                await tx.link_test()
                assert tx.stats()["active"] == str(primary)
                third = await tx.deliver(PANIC, tx.next_sequence())
                assert third.endpoint == str(primary)
                tx.close()
                assert len(await centre.wait_events(2)) == 2  # the probe's NULL and the panic
            assert len(await backup.wait_events(3)) == 3

    run(scenario())


def test_no_answer_on_the_primary_same_number_on_the_backup() -> None:
    async def scenario() -> None:
        async with ScriptedReceiver(lambda n, raw: []) as silent, \
                ScriptedReceiver(lambda n, raw: [ack(raw)]) as backup:
            tx = Transmitter(settings(silent.endpoint, backup=backup.endpoint,
                                      ack_timeout_s=0.3))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED
            assert [x.outcome for x in result.exchanges] == ["timeout", "timeout", "ack"]
            tx.close()
            one_seq_each(silent.frames + backup.frames)
            assert len(silent.frames) == 2 and len(backup.frames) == 1

    run(scenario())


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_slow_receiver(protocol: str) -> None:
    """The first answer comes after our timeout: the same frame again, same number."""

    def script(n: int, raw: bytes) -> list:
        return [0.5, ack(raw)] if n == 1 else [ack(raw)]

    async def scenario() -> None:
        async with ScriptedReceiver(script, protocol) as centre:
            tx = Transmitter(settings(centre.endpoint, ack_timeout_s=0.3))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED
            assert [x.outcome for x in result.exchanges] == ["timeout", "ack"]
            tx.close()
            await asyncio.sleep(0.3)
            one_seq_each(centre.frames)
            assert [header_fields(f)[1] for f in centre.frames] == ["0001", "0001"]

    run(scenario())


@pytest.mark.parametrize("protocol", ["tcp", "udp"])
def test_nak_with_a_skewed_clock(protocol: str) -> None:
    """The receiver's clock is two hours ahead: it NAKs with its time, we correct and resend
    under the same number, and the resend's timestamp is its clock."""
    skew = 7200.0

    def script(n: int, raw: bytes) -> list:
        theirs = time.time() + skew
        return [ack(raw)] if abs(message_time(raw) - theirs) < 20 else [nak(theirs)]

    async def scenario() -> None:
        async with ScriptedReceiver(script, protocol) as centre:
            tx = Transmitter(settings(centre.endpoint))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED
            assert [x.outcome for x in result.exchanges] == ["nak", "ack"]
            assert abs(tx.stats()["endpoints"][0]["clock_offset_s"] - skew) < 2
            assert abs(message_time(centre.frames[-1]) - time.time() - skew) < 3
            tx.close()
            one_seq_each(centre.frames)

    run(scenario())


def test_a_receiver_that_naks_everything_is_not_a_loop() -> None:
    async def scenario() -> None:
        async with ScriptedReceiver(lambda n, raw: [nak(time.time())]) as centre:
            tx = Transmitter(settings(centre.endpoint, tries=2))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == RETRY and result.reason == "nak"
            assert len(centre.frames) == 2 * (tx.max_nak_resends + 1)
            assert tx.link_ok  # it answers; it just will not take the message
            tx.close()
            one_seq_each(centre.frames)

    run(scenario())


def test_duh_is_refused_not_dropped_and_not_delivered() -> None:
    def script(n: int, raw: bytes) -> list:
        _, seq, r, line, acct = header_fields(raw)
        return [frame(f'"DUH"{seq}{r}{line}#{acct}[]')]

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint))
            seq = tx.next_sequence()
            result = await tx.deliver(PANIC, seq)
            assert result.outcome == REFUSED and not result.delivered
            assert (result.reason, result.seq) == ("duh", seq)
            assert tx.stats()["refused"] == 1 and "panic" in tx.stats()["last_refused"]
            # the outbox keeps it and sends it again later under the same number
            again = await tx.deliver(PANIC, seq)
            assert again.outcome == REFUSED
            tx.close()
            one_seq_each(centre.frames)

    run(scenario())


@pytest.mark.parametrize("how", ["silent_close", "half_reply"])
def test_receiver_closes_mid_message(how: str) -> None:
    def script(n: int, raw: bytes) -> list:
        if n == 1:
            return [None] if how == "silent_close" else [ack(raw)[:12], None]
        return [ack(raw)]

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED
            assert [x.outcome for x in result.exchanges] == ["closed", "ack"]
            tx.close()
            one_seq_each(centre.frames)

    run(scenario())


def test_hostile_replies_are_skipped_until_the_real_one() -> None:
    def script(n: int, raw: bytes) -> list:
        _, seq, r, line, acct = header_fields(raw)
        return [b"\x00\xff garbage\r", frame(f'"ACK"9999{r}{line}#{acct}[]'),
                frame(f'"ACK"{seq}{r}{line}#FFFF[]'), frame(f'"ACK"{seq}R1{line}#{acct}[]'),
                b'\nFFFF0015"ACK"0001R12L3#1234[]\r', ack(raw)]

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == DELIVERED and len(result.exchanges) == 1
            assert len(result.exchanges[0].replies) == 6
            assert tx.stats()["rejected_replies"] == {
                "not_ascii": 1, "sequence": 1, "account": 1, "receiver": 1, "crc": 1}
            tx.close()

    run(scenario())


def test_hostile_replies_alone_never_deliver() -> None:
    def script(n: int, raw: bytes) -> list:
        _, seq, r, line, acct = header_fields(raw)
        return [frame(f'"ACK"{int(seq) + 1:04d}{r}{line}#{acct}[]'), b"\n" * 3000]

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint, ack_timeout_s=0.3, tries=1))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == RETRY
            tx.close()

    run(scenario())


def test_encrypted_message_and_a_forged_plain_ack() -> None:
    key = "AAAAAAAAAAAAAAAA"

    def script(n: int, raw: bytes) -> list:
        return [ack(raw)]  # plain: anyone on the path could have sent it

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint, key=key.encode(), ack_timeout_s=0.3,
                                      tries=1))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert result.outcome == RETRY and tx.rejected == {"not_encrypted": 1}
            tx.close()

    run(scenario())


def test_lost_datagram() -> None:
    async def scenario() -> None:
        async with ScriptedReceiver(lambda n, raw: [] if n == 1 else [ack(raw)], "udp") as c:
            tx = Transmitter(settings(c.endpoint, ack_timeout_s=0.3))
            result = await tx.deliver(PANIC, tx.next_sequence())
            assert [x.outcome for x in result.exchanges] == ["timeout", "ack"]
            tx.close()
            one_seq_each(c.frames)

    run(scenario())


def test_alarms_go_first() -> None:
    def script(n: int, raw: bytes) -> list:
        return [0.4, ack(raw)]

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint))
            first = asyncio.create_task(tx.deliver(TEST, tx.next_sequence(), priority=2))
            await asyncio.sleep(0.05)  # in flight
            later = asyncio.create_task(tx.deliver(TEST, tx.next_sequence(), priority=2))
            await asyncio.sleep(0.01)
            alarm = asyncio.create_task(tx.deliver(PANIC, tx.next_sequence(), priority=0))
            results = await asyncio.gather(first, later, alarm)
            assert all(r.delivered for r in results)
            tx.close()
            assert [header_fields(f)[1] for f in centre.frames] == ["0001", "0003", "0002"]

    run(scenario())


def test_restart_resends_under_the_stored_number() -> None:
    """What the outbox does: take a number, store it, send; after a restart the counter
    starts from the stored position and the message goes again under its own number."""
    stored: dict[str, int] = {}

    async def scenario() -> None:
        tx = Transmitter(settings(dead_endpoint()),
                         counter=SequenceCounter(41, on_advance=lambda n: stored.update(last=n)))
        seq = tx.next_sequence()
        stored["panic"] = seq
        assert (await tx.deliver(PANIC, seq)).outcome == RETRY
        tx.close()
        async with ScriptedReceiver(lambda n, raw: [ack(raw)]) as centre:
            tx2 = Transmitter(settings(centre.endpoint), counter=SequenceCounter(stored["last"]))
            result = await tx2.deliver(PANIC, stored["panic"])
            assert result.delivered and header_fields(centre.frames[0])[1] == "0042"
            assert tx2.next_sequence() == 43
            tx2.close()

    run(scenario())


def test_link_tests_find_a_dead_link_and_its_return() -> None:
    answering = {"on": True}
    heard: list[bool] = []

    def script(n: int, raw: bytes) -> list:
        return [ack(raw)] if answering["on"] else []

    async def wait_for(cond, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while not cond():
            assert time.monotonic() < deadline, "timed out"
            await asyncio.sleep(0.02)

    async def scenario() -> None:
        async with ScriptedReceiver(script) as centre:
            tx = Transmitter(settings(centre.endpoint, link_test_s=0.2, ack_timeout_s=0.2,
                                      tries=1), on_link=lambda ok, why: heard.append(ok))
            task = asyncio.create_task(tx.run())
            await wait_for(lambda: tx.link_tests >= 2 and tx.link_ok)
            answering["on"] = False
            await wait_for(lambda: tx.link_ok is False)
            answering["on"] = True
            await wait_for(lambda: tx.link_ok is True)
            tx.stop()
            await task
            nulls = [f for f in centre.frames if header_fields(f)[0] == "NULL"]
            assert len(nulls) == len(centre.frames) >= 4

    run(scenario())
    assert heard == [True, False, True]


def test_link_tests_take_their_number_from_the_store_when_asked() -> None:
    store = {"last": 500}

    async def take() -> int:  # what the daemon passes: the store writes, then answers
        store["last"] += 1
        return store["last"]

    async def scenario() -> None:
        async with ScriptedReceiver(lambda n, raw: [ack(raw)]) as centre:
            tx = Transmitter(settings(centre.endpoint), take_sequence=take)
            assert (await tx.link_test()).seq == 501
            assert (await tx.link_test()).seq == 502
            tx.close()
            assert [header_fields(f)[1] for f in centre.frames] == ["0501", "0502"]

    run(scenario())
