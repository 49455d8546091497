"""The DC-09 outbox route (forward.sia.route) on a real store service against pysiaalarm:
alarms first, the stored sequence number reused, a DUH'd alarm kept, delivered only on ACK."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

from panicgw.forward.sia.route import SiaRoute, route_name
from panicgw.store import PRIO_ALARM, PRIO_OTHER, Store
from panicgw.store.service import StoreService

from .siakit import PySiaReceiver, ScriptedReceiver, ack, header_fields, payload, run
from .siakit import settings as make_settings


def _service(tmp: Path, route: str) -> StoreService:
    svc = StoreService(tmp / "gw.db")
    svc.writer.store.routes = (route,)
    return svc


async def _enqueue(svc: StoreService, body: dict, prio: int) -> int:
    def add(st: Store) -> int:
        with st.transaction():
            return st.enqueue(body["incident_id"], prio, body, body_at(body))
    return await svc.write(add)


def body_at(body: dict) -> float:
    return time.time()  # now: a check-in older than a day expires


async def _until(pred, timeout: float = 15.0) -> bool:
    loop = asyncio.get_running_loop()
    end = loop.time() + timeout
    while not await pred():
        if loop.time() > end:
            return False
        await asyncio.sleep(0.02)
    return True


def test_alarms_first_then_the_rest_each_under_its_stored_number(tmp_path: Path) -> None:
    async def main() -> None:
        async with PySiaReceiver() as rx:
            s = make_settings(rx.endpoint, link_test_s=0)
            svc = _service(tmp_path, route_name(s))
            check = await _enqueue(svc, payload("gateway_checkin"), PRIO_OTHER)
            alarm = await _enqueue(svc, payload("panic"), PRIO_ALARM)
            route = SiaRoute(s, svc.route(route_name(s)))
            task = asyncio.create_task(route.run())

            async def done() -> bool:
                c = (await svc.read("t", Store.route_counts))[route.route]
                return c["delivered"] == 2
            assert await _until(done), (route.stats(), await svc.read("t", Store.route_counts))
            await route.stop(3)
            await task
            assert [e.code for e in rx.events] == ["HA", "RP"]
            rows = {i["id"]: i for i in await svc.read("t", Store.route_list, ("delivered",))}
            assert rows[alarm]["seq"] == int(rx.events[0].sequence)
            assert rows[check]["seq"] == int(rx.events[1].sequence)
            assert (await svc.read("t", Store.due, 1e12, 10))[0].id == alarm  # JSON: untouched
            svc.close()
    run(main())


def test_a_duhd_alarm_is_kept_retried_and_counted(tmp_path: Path) -> None:
    def script(n: int, raw: bytes) -> list:
        return [ack(raw, "DUH")] if n <= 2 else [ack(raw)]

    async def main() -> None:
        async with ScriptedReceiver(script) as rx:
            s = make_settings(rx.endpoint, link_test_s=0)
            svc = _service(tmp_path, route_name(s))
            alarm = await _enqueue(svc, payload("panic"), PRIO_ALARM)
            route = SiaRoute(s, svc.route(route_name(s)), backoff_base_s=0.05)
            task = asyncio.create_task(route.run())

            async def done() -> bool:
                return (await svc.read("t", Store.route_counts))[route.route]["delivered"] == 1
            assert await _until(done)
            await route.stop(3)
            await task
            assert route.alarms_refused == 2 and route.stats()["last_alarm_refused"]
            assert {header_fields(f)[1] for f in rx.frames} == {"0001"}
            (row,) = await svc.read("t", Store.route_list, ("delivered",))
            assert row["id"] == alarm and row["attempts"] == 3
            svc.close()
    run(main())

