"""Supervision rules as pure logic, driven the way the daemon drives them."""

from __future__ import annotations

from dataclasses import replace

from panicgw.forward.contract import schema_errors
from panicgw.forward.payload import build_payload, make_incident_id
from panicgw.supervise.rule import LOST, OK, DeviceView, SupervisionEvent, Supervisor

from .conftest import SITE

T0 = 1_000_000.0
H = 3600


def apply(d: DeviceView, events: list[SupervisionEvent]) -> DeviceView:
    """What the daemon does: persist each event's state change."""
    for e in events:
        if e.device_id == d.device_id:
            d = replace(d, **e.state)
    return d


def run_until(sup: Supervisor, d: DeviceView, start: float, end: float, step: float
              ) -> tuple[DeviceView, list[SupervisionEvent]]:
    seen: list[SupervisionEvent] = []
    t = start
    while t <= end:
        ev = sup.evaluate([d], t)
        d = apply(d, ev)
        seen.extend(ev)
        t += step
    return d, seen


def test_lost_after_two_intervals_plus_grace_exactly_once() -> None:
    sup = Supervisor(started_at=T0 - 10 * H, grace_s=300)
    d = DeviceView(7, H, last_heard=T0, last_counter=0x10005)
    d, ev = run_until(sup, d, T0, T0 + 2 * H + 300, 60)
    assert ev == []  # 2 intervals + grace not yet exceeded
    d, ev = run_until(sup, d, T0 + 2 * H + 301, T0 + 10 * H, 60)
    assert [(e.event, e.code, e.qualifier) for e in ev] == [("supervision_lost", 381, 1)]
    assert d.supervision == LOST and ev[0].counter == 0x10005
    # heard again -> restore once
    d = replace(d, last_heard=T0 + 10 * H + 5, last_counter=0x10006)
    d, ev = run_until(sup, d, T0 + 10 * H + 10, T0 + 11 * H, 60)
    assert [(e.event, e.code, e.qualifier) for e in ev] == [("supervision_restore", 381, 3)]
    assert d.supervision == OK and ev[0].counter == 0x10006


def test_silence_counts_from_gateway_start_not_before() -> None:
    """A gateway that was down for a day must not declare every button lost at boot."""
    sup = Supervisor(started_at=T0, grace_s=300)
    d = DeviceView(7, H, last_heard=T0 - 86400)
    assert sup.evaluate([d], T0 + 60) == []
    assert [e.event for e in sup.evaluate([d], T0 + 2 * H + 301)] == ["supervision_lost"]
    never = DeviceView(8, H, last_heard=None)
    assert sup.evaluate([never], T0 + 2 * H) == []
    assert [e.event for e in sup.evaluate([never], T0 + 2 * H + 301)] == ["supervision_lost"]


def test_per_device_interval() -> None:
    sup = Supervisor(started_at=T0, grace_s=0)
    fast = DeviceView(1, 60, last_heard=T0)
    slow = DeviceView(2, H, last_heard=T0)
    ev = sup.evaluate([fast, slow], T0 + 121)
    assert [e.device_id for e in ev] == [1]


def test_low_battery_once_and_restore_with_hysteresis() -> None:
    sup = Supervisor(started_at=T0, low_battery_mv=2400, hysteresis_mv=100)
    d = DeviceView(9, H, last_heard=T0, battery_mv=2600)
    assert sup.evaluate([d], T0) == []
    d = replace(d, low_battery=True, battery_mv=2500)  # the button's own flag
    ev = sup.evaluate([d], T0 + 1)
    assert [(e.event, e.code, e.qualifier) for e in ev] == [("low_battery", 384, 1)]
    d = apply(d, ev)
    assert sup.evaluate([d], T0 + 2) == []  # once
    d = replace(d, low_battery=False, battery_mv=2450)  # flag clear, but inside hysteresis
    assert sup.evaluate([d], T0 + 3) == []
    d = replace(d, battery_mv=2500)
    ev = sup.evaluate([d], T0 + 4)
    assert [(e.event, e.code, e.qualifier) for e in ev] == [("low_battery_restore", 384, 3)]
    d = apply(d, ev)
    assert sup.evaluate([d], T0 + 5) == []
    # voltage threshold alone also raises it
    d = replace(d, battery_mv=2300)
    assert [e.event for e in sup.evaluate([d], T0 + 6)] == ["low_battery"]


def test_checkin_schedule() -> None:
    sup = Supervisor(started_at=T0, checkin_interval_s=600)
    first = sup.checkin(T0)
    assert first is not None and (first.event, first.code) == ("gateway_checkin", 602)
    assert sup.checkin(T0 + 599) is None
    assert sup.checkin(T0 + 600) is not None
    assert sup.next_checkin_at() == T0 + 1200
    # a restarted gateway seeded from the DB keeps the schedule
    again = Supervisor(started_at=T0 + 700, checkin_interval_s=600, last_checkin=T0 + 600)
    assert again.checkin(T0 + 800) is None
    assert again.checkin(T0 + 1200) is not None
    # ticks every 7 s: one check-in per interval, on the schedule (no drift)
    sup = Supervisor(started_at=T0, checkin_interval_s=600, last_checkin=T0)
    times = [t for t in range(1, 6001, 7) if sup.checkin(T0 + t)]
    assert len(times) == 10
    assert sup.last_checkin == T0 + 6000
    # far behind (gateway was off for hours): one check-in now, not a burst
    late = Supervisor(started_at=T0, checkin_interval_s=600, last_checkin=T0 - 86400)
    assert late.checkin(T0) is not None and late.checkin(T0 + 1) is None


def test_bridge_trouble_and_restore() -> None:
    sup = Supervisor(started_at=T0, bridge_missing_s=300)
    assert sup.bridge(T0 + 100, None) is None
    ev = sup.bridge(T0 + 301, None)
    assert ev is not None and (ev.event, ev.code, ev.qualifier) == ("gateway_trouble", 330, 1)
    assert sup.bridge(T0 + 400, None) is None  # once
    back = sup.bridge(T0 + 500, T0 + 499)
    assert back is not None and (back.event, back.qualifier) == ("gateway_trouble_restore", 3)
    assert sup.bridge(T0 + 501, T0 + 500) is None
    assert Supervisor(started_at=T0).bridge(T0 + 10_000, None, enabled=False) is None


def test_tick_events_make_schema_valid_payloads() -> None:
    sup = Supervisor(started_at=T0, grace_s=0, low_battery_mv=2400)
    d = DeviceView(0xABCD0001, 60, last_heard=T0, battery_mv=2000, last_counter=42)
    events = sup.tick([d], T0 + 500, bridge_last_seen=None)
    assert [e.event for e in events] == ["supervision_lost", "low_battery", "gateway_trouble",
                                         "gateway_checkin"]
    for e in events:
        dev = e.device_id is not None
        body = build_payload(
            incident_id=(make_incident_id(e.device_id, e.counter or 0, e.event) if dev
                         else f"gw-1-{e.event}-{int(e.at)}"),
            event=e.event, gateway_id="gw-1", first_heard=e.at, counter=e.counter,
            site=SITE if dev else None,
            device={"id": e.device_id, "battery_mv": d.battery_mv} if dev else None,
            detail=e.detail,
        )
        assert schema_errors(body) == []
        assert (body["contact_id"]["code"], body["contact_id"]["qualifier"]) == (e.code,
                                                                                 e.qualifier)
