"""The forwarder during a dispatch outage (issue 11.9 and 11.10), against the real recording
dispatch server over HTTP: while an alarm waits it is the probe, sent again on a short
step (one request per probe, the rest waits), the first probe after dispatch returns
delivers it; the log's "next attempt" is the time the forwarder really uses.

No timing is asserted: the liveness guards only bound how long we wait for a condition, and
the probe-count bound follows from the forwarder's own minimum step (a slow machine makes
fewer probes, never more)."""

from __future__ import annotations

import asyncio
import re
import time
from datetime import datetime
from typing import Any

from panicgw.dispatch_server.server import DispatchServer
from panicgw.forward.forwarder import Forwarder

from .conftest import MemoryOutbox, payload

PROBE_S = 0.1  # alarm_probe_s for the test; steps are PROBE_S * uniform(0.8, 1.2)


def run(coro: Any) -> Any:
    return asyncio.run(asyncio.wait_for(coro, 90))


async def until(pred: Any, timeout: float = 30.0) -> bool:
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        await asyncio.sleep(0.01)
    return True


def test_an_alarm_waiting_in_an_outage_is_the_probe_and_goes_with_the_first_after_it(
        outbox: MemoryOutbox) -> None:
    async def main() -> None:
        srv = DispatchServer()
        await srv.start()
        srv.fail(500)  # dispatch answers 500 until healed
        # Default backoff (up to 30 s +-50 % between probes without an alarm waiting).
        fwd = Forwarder(outbox, srv.url, gateway_id="gw-1", alarm_probe_s=PROBE_S,
                        timeout_s=5.0)
        task = asyncio.create_task(fwd.run())
        backlog = [outbox.add(payload("test", device_id=0x200 + n)) for n in range(2)]
        assert await until(lambda: len(srv.received) >= 2)  # the TESTs met the outage
        alarm = outbox.add(payload("panic", device_id=0x100))
        key = outbox.rows[alarm].item.payload["idempotency_key"]
        fwd.wake()
        # Without the alarm probing the steps would now be seconds to tens of seconds.
        assert await until(lambda: sum(r.idempotency_key == key for r in srv.received) >= 12)
        probes = [r for r in srv.received if r.idempotency_key == key]
        first, last = probes[0].at, probes[-1].at
        # One request per probe, always the alarm: the backlog waits.
        after = [r for r in srv.received if r.at >= first]
        assert {r.idempotency_key for r in after} == {key}
        # Bounded: the step is never shorter than 0.8 x alarm_probe_s.
        assert len(probes) <= (last - first) / (0.8 * PROBE_S) + 1
        st = fwd.stats()
        assert st["alarm_waiting"] is True and st["probes"] >= len(probes) - 1
        assert outbox.rows[alarm].state == "pending"

        n_before = len(srv.received)
        srv.heal()
        assert await until(lambda: outbox.states() == {"delivered": 3})
        await fwd.stop()
        await task
        await srv.stop()
        back = srv.received[n_before:]
        # The first request after dispatch came back was the alarm, and it was delivered.
        assert back[0].idempotency_key == key and back[0].status == 200
        assert sum(r.idempotency_key == key for r in back) == 1
        assert outbox.delivered_order[0] == alarm
        assert sorted(outbox.delivered_order[1:]) == backlog
        assert fwd.stats()["alarm_waiting"] is False
    run(main())


def _logged_next(caplog: Any) -> list[tuple[str, float, float]]:
    """(incident, logged delay, logged time) of every 'next attempt' warning."""
    out = []
    for rec in caplog.records:
        m = re.search(r"dispatch (\S+) failed \(.*\): next attempt in ([\d.]+) s, at (\S+)",
                      rec.getMessage())
        if m:
            at = datetime.fromisoformat(m.group(3).replace("Z", "+00:00")).timestamp()
            out.append((m.group(1), float(m.group(2)), at))
    return out


def test_the_logged_next_attempt_is_when_it_really_happens(outbox: MemoryOutbox,
                                                           caplog: Any) -> None:
    """Issue 11.9: the log said "retry in 0.5 s" while the real gaps were 27-41 s (the item's
    own backoff was logged, the global pause decided). Now the log, the outbox row and the
    pause agree, and no request comes before the time logged."""
    async def main() -> None:
        srv = DispatchServer()
        await srv.start()
        srv.fail(503)
        fwd = Forwarder(outbox, srv.url, gateway_id="gw-1", alarm_probe_s=PROBE_S,
                        backoff_base_s=0.05, alarm_backoff_max_s=0.4, timeout_s=5.0)
        task = asyncio.create_task(fwd.run())
        item = outbox.add(payload("test", device_id=0x300))
        fwd.wake()
        assert await until(lambda: len(srv.received) >= 6)
        srv.heal()
        assert await until(lambda: outbox.states() == {"delivered": 1})
        await fwd.stop()
        await task
        await srv.stop()
        return item, [r.at for r in srv.received]

    with caplog.at_level("WARNING", logger="panicgw.forwarder"):
        item, arrivals = run(main())
    logged = _logged_next(caplog)
    assert len(logged) >= 5
    inc = outbox.rows[item].item.incident_id
    assert {i for i, _, _ in logged} == {inc}
    delays = [d for _, d, _ in logged]
    assert max(delays) > 0.1  # the pause grows: not the item's first backoff step repeated
    for n, (_, _, at) in enumerate(logged):
        # the next request is never before the time the log announced (ms rounding)
        assert arrivals[n + 1] >= at - 0.002, (n, arrivals[n + 1], at)
