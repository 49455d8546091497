"""Supervision's I/O side: which devices to look at, and where the work runs.

Evaluating every one of 10,000 devices (read all state rows, build views, apply the rules)
took 60-110 ms on the reference machine. It used to run on the pipeline thread, so every
supervision tick stalled every frame behind it, alarms included: that was the p99 of
press-to-dispatch. Now:

- the rules (:mod:`panicgw.supervise.rule`) still decide, but only for *candidates*: devices
  that could raise or clear something now (silent past their limit, already lost, a low or
  alarmed battery). ``Store.candidates`` finds them, on the supervision read lane of the
  daemon's store service (its own thread and read connection; WAL: it never blocks the
  writer);
- only the resulting events are written, in one transaction on the store service's writer
  thread (the gateway's single writer, where the pipeline's batches run too).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

from panicgw.forward import payload as dp
from panicgw.store import Store
from panicgw.supervise.rule import DeviceView, SupervisionEvent, Supervisor, silent_for


def candidates(store: Store, sup: Supervisor, now: float) -> list[DeviceView]:
    """Views of the devices the rules could act on at ``now``. Silence is judged in the
    query by :func:`silent_for` itself, so query and rules cannot disagree on who is
    silent."""
    return [DeviceView(c.device_id, c.supervision_s, c.last_heard, c.supervision or "ok",
                       c.battery_alarm, c.low_battery, c.battery_mv,
                       c.replay_highest if c.replay_highest is not None
                       and c.replay_highest >= 0 else None, float(c.enrolled_at or 0.0))
            for c in store.candidates(now, sup.started_at, sup.limit_s, sup.low_battery_mv,
                                      silent_for)]


def evaluate(store: Store, sup: Supervisor, now: float, *,
             bridge_last_seen: float | None, bridge_enabled: bool,
             checkins: bool) -> list[SupervisionEvent]:
    """Everything due now (runs on the runner's thread; ``sup`` is only touched there)."""
    events = sup.tick(candidates(store, sup, now), now, bridge_last_seen=bridge_last_seen,
                      bridge_enabled=bridge_enabled)
    if not checkins:  # no dispatch: check-ins would only pile up unsent
        events = [e for e in events if e.event != "gateway_checkin"]
    return events


def undo_point(sup: Supervisor) -> Callable[[], None]:
    """Undo for the Supervisor's own state (check-in time, bridge trouble), which ``tick``
    advances before its events are stored: call it when storing fails, so the next tick
    raises them again instead of believing they were sent."""
    saved = dict(vars(sup))
    return lambda: vars(sup).update(saved)


def is_stale(ev: SupervisionEvent, current_last_heard: float | None,
             current_enrolled_at: float | None = None) -> bool:
    """True when the device was heard, or re-enrolled (rekeyed, re-registered), after the
    snapshot the event was decided on."""
    if ev.basis is None:
        return False
    return current_last_heard != ev.basis.last_heard or (
        current_enrolled_at is not None and current_enrolled_at != ev.basis.enrolled_at)


def store_events(store: Store, gateway_id: str,
                 events: Iterable[SupervisionEvent]) -> list[SupervisionEvent]:
    """Store the events with their outbox rows and state changes in one durable commit
    (call on the store service's writer thread: the only writer). Returns the events
    stored: a device event whose device was heard since it was decided is dropped
    (:func:`is_stale`)."""
    events = list(events)
    if not events:
        return []
    ids = [e.device_id for e in events if e.device_id is not None]
    states = store.device_states_for(ids)
    enrolled = {i: store.enrolled_at(i) for i in ids}
    events = [e for e in events if e.device_id is None or not is_stale(
        e, states[e.device_id].last_heard if e.device_id in states else None,
        enrolled.get(e.device_id))]
    if not events:
        return []
    with store.transaction():
        for ev in events:
            dev = store.get_device(ev.device_id) if ev.device_id is not None else None
            key_gen = dev.key_gen if dev is not None else 1  # a rekey restarts the counter
            if dev is not None and ev.counter is not None:
                incident = dp.make_incident_id(ev.device_id, ev.counter, ev.event, key_gen)
            else:
                incident = dp.make_gateway_incident_id(gateway_id, ev.event, ev.at)
            store.raise_incident(incident, ev.device_id, ev.event, ev.at, key_gen)
            st = states.get(ev.device_id) if ev.device_id is not None else None
            device: dict[str, Any] | None = None
            if dev is not None:
                device = {"id": ev.device_id, "label": dev.label,
                          "battery_mv": st.battery_mv if st else None,
                          "low_battery": bool(st.low_battery) if st else False,
                          "firmware": dev.firmware}
            payload = dp.build_payload(
                incident_id=incident, event=ev.event, gateway_id=gateway_id,
                first_heard=ev.at, counter=ev.counter if dev is not None else None,
                site=dev.site.to_dict() if dev else None, device=device,
                paths=([{"path": st.last_path, "rssi": st.last_rssi, "snr": st.last_snr,
                         "at": st.last_heard}] if st and st.last_path else []),
                detail=ev.detail, key_gen=key_gen,
            )
            store.enqueue(incident, dp.priority_for(ev.event), payload, ev.at)
            if ev.device_id is not None:
                store.set_supervision(ev.device_id, ev.state.get("supervision"),
                                      ev.state.get("battery_alarm"))
            if "last_checkin" in ev.state:
                store.set_meta("last_checkin", repr(ev.state["last_checkin"]))
            if "bridge_trouble" in ev.state:
                store.set_meta("bridge_trouble", "1" if ev.state["bridge_trouble"] else "0")
    return events
