"""Forwarder against the real local dispatch receiver over real HTTP(S) on 127.0.0.1."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from panicgw.dispatch_server.server import DispatchServer
from panicgw.forward.contract import sign, verify_signature
from panicgw.forward.forwarder import Forwarder

from .conftest import MemoryOutbox, Pki, free_port, payload

TOKEN = "t0ken-for-tests"
SECRET = "gateway-secret-for-tests"
FAST = dict(backoff_base_s=0.02, backoff_max_s=0.2, alarm_backoff_max_s=0.1, poll_s=0.05,
            timeout_s=2.0)


def run(coro: Awaitable[Any]) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 60))


async def until(pred: Callable[[], bool], timeout: float = 20.0) -> bool:
    """Liveness guard (not a timing assert): poll until ``pred`` or give up."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.01)
    return True


def fwd_for(store: MemoryOutbox, srv: DispatchServer, **kw: Any) -> Forwarder:
    args: dict[str, Any] = dict(gateway_id="gw-1", token=TOKEN, secret=SECRET, **FAST)
    args.update(kw)
    return Forwarder(store, srv.url, **args)


def test_signature_roundtrip_and_tamper() -> None:
    body = b'{"a":1}'
    h = sign(b"k", 1000, body)
    assert verify_signature(b"k", h, body, 1000) is None
    assert verify_signature(b"k", h, body + b" ", 1000) == "bad signature"
    assert verify_signature(b"x", h, body, 1000) == "bad signature"
    assert verify_signature(b"k", h, body, 2000) == "signature timestamp outside tolerance"
    assert verify_signature(b"k", "v1=00", body, 1000) == "malformed signature header"


def test_https_with_client_cert_delivers_signed_alarm(outbox: MemoryOutbox, pki: Pki) -> None:
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET, ssl_context=pki.server_context())
        await srv.start()
        outbox.add(payload("panic"))
        fwd = fwd_for(outbox, srv, ca_file=str(pki.ca), client_cert=str(pki.client_cert),
                      client_key=str(pki.client_key))
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: outbox.states() == {"delivered": 1})
        await fwd.stop()
        await task
        await srv.stop()
        [rec] = srv.received
        assert srv.url.startswith("https://")
        assert rec.verdict == "accepted" and rec.status == 200
        assert rec.headers["Idempotency-Key"] == rec.body["idempotency_key"]
        assert rec.headers["Authorization"] == f"Bearer {TOKEN}"
        assert rec.headers["X-Panic-Signature"].startswith("t=")
        assert rec.headers["X-Panic-Gateway"] == "gw-1"
        assert rec.body["times"]["forwarded"].endswith("Z")
        assert rec.body["times"]["forwarded"] != rec.body["times"]["first_heard"]
        assert fwd.stats()["sent"] == 1 and fwd.stats()["last_success_at"]
    run(main())


def test_untrusted_server_cert_is_retried_not_delivered(outbox: MemoryOutbox, pki: Pki) -> None:
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET,
                             ssl_context=pki.server_context(require_client=False))
        await srv.start()
        outbox.add(payload("panic"))
        fwd = fwd_for(outbox, srv, ca_file=str(pki.other_ca))
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: fwd.failed.get("tls", 0) >= 2)
        await fwd.stop()
        await task
        await srv.stop()
        assert srv.received == []  # nothing leaked to an unverified peer
        assert outbox.states() == {"pending": 1}
        assert "certificate" in (fwd.last_error or "")
    run(main())


def test_outage_then_recovery_delivers_everything_alarms_first(outbox: MemoryOutbox) -> None:
    async def main() -> None:
        port = free_port()
        srv = DispatchServer(port=port, token=TOKEN, secret=SECRET)
        fwd = fwd_for(outbox, srv, timeout_s=0.5)
        task = asyncio.create_task(fwd.run())
        # Queue builds up while dispatch refuses connections: old check-ins first, alarms last.
        t0 = time.time()
        for n in range(4):
            outbox.add(payload("gateway_checkin", at=1000.0 + n), at=t0 + n)
        for n in range(3):
            outbox.add(payload("supervision_lost", device_id=100 + n), at=t0 + 10 + n)
        outbox.add(payload("test", device_id=50), at=t0 + 15)
        fwd.wake()
        assert await until(lambda: fwd.failed.get("connect", 0) >= 2)
        for n in range(3):
            outbox.add(payload("panic", device_id=200 + n), at=t0 + 20 + n)
            fwd.wake()
        # Back, but broken: 500s, then answers slower than the client's timeout.
        srv.fail(500, count=2)
        await srv.start()
        assert await until(lambda: fwd.failed.get("http_500", 0) >= 2)
        srv.fail(None, count=2, delay_s=5.0)
        assert await until(lambda: fwd.failed.get("timeout", 0) >= 2), (fwd.stats(), srv.received)
        assert await until(lambda: outbox.states() == {"delivered": 11})
        await fwd.stop()
        await task
        await srv.stop()
        events = [r.body["event"] for r in srv.accepted()]
        assert sorted(events) == sorted(["gateway_checkin"] * 4 + ["supervision_lost"] * 3
                                        + ["test"] + ["panic"] * 3)
        assert events[:3] == ["panic"] * 3, events
        prios = [outbox.rows[i].item.priority for i in outbox.delivered_order]
        assert prios == sorted(prios), prios  # strict priority order at recovery
        assert fwd.stats()["sent"] == 11
        assert all(r.verdict in ("accepted", "duplicate", "failed_on_demand")
                   for r in srv.received)
    run(main())


def test_permanent_4xx_dead_letters_and_retryable_codes_do_not(outbox: MemoryOutbox) -> None:
    async def main() -> None:
        srv = DispatchServer(token="the-right-token", secret=SECRET)
        await srv.start()

        # schema-invalid body -> 422: a TEST is dead-lettered, an ALARM never (kept, loud)
        srv2 = MemoryOutbox()
        broken_test = payload("test", device_id=8)
        del broken_test["times"]
        broken_alarm = payload("panic", device_id=9)
        broken_alarm["contact_id"]["code"] = 137
        t_id, a_id = srv2.add(broken_test), srv2.add(broken_alarm)
        fwd2 = Forwarder(srv2, srv.url, gateway_id="gw-1", token="the-right-token",
                         secret=SECRET, **FAST)
        task = asyncio.create_task(fwd2.run())
        assert await until(lambda: srv2.rows[t_id].state == "dead"
                           and srv2.rows[a_id].item.attempts >= 3)
        await fwd2.stop()
        await task
        assert srv.received[-1].verdict == "schema" and srv.received[-1].status == 422
        assert srv2.rows[a_id].state == "pending"
        assert srv2.rows[a_id].error.startswith("refused: HTTP 422")
        st = fwd2.stats()
        assert st["dead_lettered"] == 1 and st["alarms_refused"] >= 3
        assert st["last_alarm_refused"].startswith(broken_alarm["incident_id"])
        assert st["auth_failed"] is False

        # 429 with Retry-After and 408 are retried; a 409 means dispatch already has it
        srv3 = MemoryOutbox()
        srv3.add(payload("panic", device_id=10))
        srv.fail(429, count=1, retry_after=0)
        fwd3 = Forwarder(srv3, srv.url, gateway_id="gw-1", token="the-right-token",
                         secret=SECRET, **FAST)
        task = asyncio.create_task(fwd3.run())
        assert await until(lambda: srv3.states() == {"delivered": 1})
        srv.fail(408, count=1)
        srv3.add(payload("panic", device_id=11))
        fwd3.wake()
        assert await until(lambda: srv3.states() == {"delivered": 2})
        srv.fail(409, count=1)
        srv3.add(payload("panic", device_id=12))
        fwd3.wake()
        assert await until(lambda: srv3.states() == {"delivered": 3})
        await fwd3.stop()
        await task
        await srv.stop()
        assert fwd3.failed == {"http_429": 1, "http_408": 1}
        assert fwd3.dead_lettered == 0
    run(main())


def test_auth_failure_never_dead_letters_then_token_fixed_alarm_first(tmp_path: Any) -> None:
    """401 (wrong token) and 403 keep every message pending on the SQLite outbox, flagged as
    auth_failed in the stats; once the technician fixes the token (and restarts), the alarm
    is delivered first and nothing was ever dead."""
    from panicgw.forward.payload import priority_for
    from panicgw.store import Store

    async def main() -> None:
        store = Store(tmp_path / "gw.db")
        now = time.time()
        for i, ev in enumerate(("test", "low_battery", "panic")):
            body = payload(ev, device_id=0x100 + i)
            store.enqueue(body["incident_id"], priority_for(ev), body, now)
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        fwd = fwd_for(store, srv, token="an-old-token")  # type: ignore[arg-type]
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: fwd.auth_failures >= 3)
        srv.fail(403, count=2)  # a 403 (e.g. certificate / IP rule) is an auth failure too
        assert await until(lambda: fwd.failed.get("http_403", 0) == 2)
        await fwd.stop()
        await task
        st = fwd.stats()
        assert st["auth_failed"] is True and st["auth_failures"] >= 5
        assert st["auth_failed_since"] and st["dead_lettered"] == 0 and st["sent"] == 0
        assert store.outbox_counts()["pending"] == 3 and store.outbox_counts()["dead"] == 0
        assert store.dead_letters() == []
        # Paced like an outage: only the alarm probes, the rest waits (no POST per item).
        alarm_key = store.outbox_rows()[2]["payload"]["idempotency_key"]
        assert len(srv.received) >= 5 and srv.accepted() == []
        assert {r.idempotency_key for r in srv.received} == {alarm_key}

        fixed = fwd_for(store, srv)  # type: ignore[arg-type]  # config fixed, restarted
        task = asyncio.create_task(fixed.run())
        assert await until(lambda: store.outbox_counts()["delivered"] == 3)
        await fixed.stop()
        await task
        await srv.stop()
        assert [r.body["event"] for r in srv.accepted()] == ["panic", "test", "low_battery"]
        assert store.outbox_counts()["dead"] == 0 and fixed.stats()["auth_failed"] is False
        store.close()
    run(main())


def test_auth_failure_logs_at_a_bounded_rate(outbox: MemoryOutbox, caplog: Any) -> None:
    async def main() -> None:
        srv = DispatchServer(token="the-right-token", secret=SECRET)
        await srv.start()
        outbox.add(payload("panic"))
        fwd = fwd_for(outbox, srv)  # wrong token
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: fwd.auth_failures >= 6)
        await fwd.stop()
        await task
        await srv.stop()
        assert outbox.states() == {"pending": 1}
    with caplog.at_level("WARNING", logger="panicgw.forwarder"):
        run(main())
    lines = [r for r in caplog.records if "credentials" in r.getMessage()]
    assert len(lines) == 1 and lines[0].levelname == "ERROR"


def test_two_gateways_one_incident_at_dispatch() -> None:
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        stores = []
        fwds = []
        for gw, path in (("gw-north", "lora"), ("gw-south", "wifi")):
            s = MemoryOutbox()
            s.add(payload("panic", gateway_id=gw,
                          paths=[{"path": path, "rssi": None, "snr": None, "at": 1.0}]))
            stores.append(s)
            fwds.append(Forwarder(s, srv.url, gateway_id=gw, token=TOKEN, secret=SECRET,
                                  **FAST))
        tasks = [asyncio.create_task(f.run()) for f in fwds]
        assert await until(lambda: all(s.states() == {"delivered": 1} for s in stores))
        for f in fwds:
            await f.stop()
        await asyncio.gather(*tasks)
        await srv.stop()
        assert sorted(r.verdict for r in srv.received) == ["accepted", "duplicate"]
        assert len(srv.incidents) == 1
        keys = {r.headers["Idempotency-Key"] for r in srv.received}
        assert len(keys) == 1
    run(main())


def test_stop_finishes_the_post_in_flight(outbox: MemoryOutbox) -> None:
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        srv.fail(None, count=1, delay_s=0.5)  # slow but successful
        outbox.add(payload("panic"))
        outbox.add(payload("gateway_checkin"))
        fwd = fwd_for(outbox, srv)
        task = asyncio.create_task(fwd.run())
        assert await srv.wait_for(lambda s: s.active == 1)
        await fwd.stop()
        await task
        await srv.stop()
        assert outbox.rows[1].state == "delivered"  # finished, not torn
        assert outbox.rows[2].state == "pending"  # nothing new started after stop()
        assert [r.verdict for r in srv.received] == ["accepted"]
    run(main())


def test_expired_checkins_are_dead_lettered_alarms_never(outbox: MemoryOutbox) -> None:
    async def main() -> None:
        port = free_port()
        srv = DispatchServer(port=port, token=TOKEN, secret=SECRET)
        now = time.time()
        outbox.add(payload("gateway_checkin"), at=now - 90_000)
        outbox.add(payload("panic"), at=now - 90_000_0)
        fwd = fwd_for(outbox, srv)
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: outbox.rows[1].state == "dead")
        await srv.start()
        assert await until(lambda: outbox.rows[2].state == "delivered")
        await fwd.stop()
        await task
        await srv.stop()
        assert fwd.expired == 1 and "expired" in outbox.rows[1].error
    run(main())


def test_against_the_sqlite_store(tmp_path: Any) -> None:
    """The OutboxStore protocol as A's SQLite Store implements it (same thread, own conn)."""
    from panicgw.forward.payload import priority_for
    from panicgw.store import Store

    async def main() -> None:
        store = Store(tmp_path / "gw.db")
        now = time.time()
        for ev in ("gateway_checkin", "low_battery", "panic"):
            body = payload(ev)
            store.enqueue(body["incident_id"], priority_for(ev), body, now)
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        srv.fail(500, count=1)
        fwd = fwd_for(store, srv)  # type: ignore[arg-type]
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: store.outbox_counts()["delivered"] == 3)
        await fwd.stop()
        await task
        await srv.stop()
        assert [r.body["event"] for r in srv.accepted()] == ["panic", "low_battery",
                                                             "gateway_checkin"]
        rows = store.outbox_rows()
        assert all(r["state"] == "delivered" for r in rows)
        assert max(r["attempts"] for r in rows) == 2  # the 500 was counted as an attempt
        store.close()
    run(main())


def test_outbox_read_overlapping_a_delivery_never_sends_it_again(outbox: MemoryOutbox) -> None:
    """The daemon reads the outbox on one thread and writes it on another (the pipeline
    thread). A ``due()`` snapshot taken while an offered alarm was in flight, returning only
    after that alarm's delivery was recorded and it left the in-flight set, must not start
    it again: the alarm is POSTed exactly once."""
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        reader, writer = ThreadPoolExecutor(1), ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        reads: list[list[int]] = []
        stale_at: list[int] = []
        stale_returned = threading.Event()
        alarm_id = 0
        fwd: Forwarder | None = None

        def due(now: float, limit: int) -> list[Any]:
            items = MemoryOutbox.due(outbox, now, limit)
            reads.append([i.id for i in items])
            if alarm_id and alarm_id in reads[-1] and not stale_returned.is_set():
                # A slow read: its snapshot predates the delivery being recorded.
                end = time.monotonic() + 10
                while time.monotonic() < end and (
                        outbox.rows[alarm_id].state != "delivered"
                        or fwd is None or alarm_id in fwd._inflight):
                    time.sleep(0.005)
                stale_at.append(len(reads))
                stale_returned.set()
            return items

        async def call_store(fn: Any, *args: Any) -> Any:
            pool = reader if fn is due else writer
            return await loop.run_in_executor(pool, fn, *args)

        outbox.due = due  # type: ignore[method-assign]
        fwd = fwd_for(outbox, srv, poll_s=60.0, call_store=call_store)
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: len(reads) >= 1)  # the start-up sweep saw an empty outbox
        srv.fail(None, count=1, delay_s=0.3)  # dispatch takes a moment to answer the alarm
        alarm_id = outbox.add(payload("panic"))
        fwd.offer([outbox.rows[alarm_id].item])  # the pipeline's fast lane
        assert alarm_id in fwd._inflight
        fwd.wake()  # e.g. another commit: the loop reads the outbox while the POST flies
        assert await until(stale_returned.is_set)
        # the read after the stale one: its step (and any POST it started) is done
        assert await until(lambda: len(reads) > stale_at[0] and not fwd._inflight
                           and not srv.active)
        await fwd.stop()
        await task
        await srv.stop()
        reader.shutdown()
        writer.shutdown()
        assert outbox.states() == {"delivered": 1}
        assert len(srv.received) == 1, [(r.status, r.verdict) for r in srv.received]
    run(main())


def test_offer_while_a_step_awaits_the_store_starts_the_alarm_once(
        outbox: MemoryOutbox) -> None:
    """A step read an alarm (not yet offered) and an expired check-in; while it awaits the
    check-in's dead-letter write, the pipeline's fast lane offers that alarm. The step must
    not start it a second time."""
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        offered: list[int] = []
        fwd: Forwarder | None = None
        alarm_id = 0

        async def call_store(fn: Any, *args: Any) -> Any:
            if fn == outbox.dead_letter and alarm_id and not offered and fwd is not None:
                offered.append(alarm_id)  # on_commit runs while this write is pending
                fwd.offer([outbox.rows[alarm_id].item])
            return fn(*args)

        fwd = fwd_for(outbox, srv, poll_s=60.0, call_store=call_store)
        task = asyncio.create_task(fwd.run())
        assert await until(lambda: not fwd._sweep)  # the start-up sweep saw an empty outbox
        srv.fail(None, count=1, delay_s=0.3)  # the alarm's POST is still in flight later
        outbox.add(payload("gateway_checkin"), at=time.time() - 2 * 86400)  # expired
        alarm_id = outbox.add(payload("panic"))
        fwd.wake()
        assert await until(lambda: bool(offered) and not fwd._inflight and not srv.active)
        await fwd.stop()
        await task
        await srv.stop()
        assert outbox.states() == {"dead": 1, "delivered": 1}
        assert len(srv.received) == 1, [(r.status, r.verdict) for r in srv.received]
    run(main())


def test_stop_during_an_outbox_read_starts_nothing_new(outbox: MemoryOutbox) -> None:
    """stop() while a step awaits its outbox read: what that read returns is not sent (the
    item stays pending for the next start), so shutdown is not held up by a new POST."""
    async def main() -> None:
        srv = DispatchServer(token=TOKEN, secret=SECRET)
        await srv.start()
        reader = ThreadPoolExecutor(1)
        loop = asyncio.get_running_loop()
        in_read, release = threading.Event(), threading.Event()

        def due(now: float, limit: int) -> list[Any]:
            items = MemoryOutbox.due(outbox, now, limit)
            if items:
                in_read.set()
                release.wait(10)
            return items

        async def call_store(fn: Any, *args: Any) -> Any:
            if fn is due:
                return await loop.run_in_executor(reader, fn, *args)
            return fn(*args)

        outbox.due = due  # type: ignore[method-assign]
        fwd = fwd_for(outbox, srv, poll_s=60.0, call_store=call_store)
        task = asyncio.create_task(fwd.run())
        outbox.add(payload("panic"))
        fwd.wake()
        assert await until(in_read.is_set)
        stopping = asyncio.create_task(fwd.stop(timeout=3.0))
        await asyncio.sleep(0.05)
        release.set()
        await stopping
        await task
        await srv.stop()
        reader.shutdown()
        assert srv.received == []
        assert outbox.states() == {"pending": 1}
    run(main())
