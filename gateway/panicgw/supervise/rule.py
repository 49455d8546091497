"""Supervision rules (contract 3): pure logic, no I/O, no clock of its own.

The daemon calls :meth:`Supervisor.evaluate` periodically (and may call it for one device
right after a frame, for a prompt restore) with the devices' current state, then stores and
forwards the returned events and applies each event's ``state`` change to the device row, so
the next evaluation does not raise the same event again ("once").

Rules:
- **Supervision loss (381)**: silent longer than ``2 * supervision_s + grace_s``. Silence is
  counted by :func:`silent_for`, the one rule the daemon (these rules and the runner's
  candidate SQL, which calls the same function) and ``panicgw diag`` share: from the latest
  of when the device was last heard, when it was (re)enrolled (registered, rekeyed, or
  re-registered with a new key or supervision interval: the installer is at the button and
  its schedule starts anew) and when the gateway started (a gateway that was itself down
  heard nothing, which is not evidence that the buttons are gone).
- **Restore (3381)**: a "lost" device heard again within the limit.
- **Low battery (384)**: the latest frame had the low-battery flag, or its voltage is below
  ``low_battery_mv`` when that is set. **Restore (3384)**: flag clear and voltage at least
  ``low_battery_mv + hysteresis_mv`` (hysteresis stops a tired cell toggling 384/3384).
- **Check-in (602)**: every ``checkin_interval_s`` since the last one (``None``: due now), so
  dispatch notices a gateway that stopped talking.
- **Bridge trouble (330)**: the LoRa bridge missing longer than ``bridge_missing_s``;
  restore when it is back. Not evaluated when serial ingest is disabled.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

LOST = "lost"
OK = "ok"


def silent_since(last_heard: float | None, enrolled_at: float | None,
                 started_at: float | None = None) -> float:
    """Where a device's silence starts: the latest of last heard, (re)enrolled and gateway
    start (``None``: not known / not applicable)."""
    return max(last_heard or 0.0, enrolled_at or 0.0, started_at or 0.0)


def silent_for(now: float, last_heard: float | None, enrolled_at: float | None,
               started_at: float | None = None) -> float:
    """How long a device has been silent at ``now`` (see :func:`silent_since`). Also
    registered as an SQLite function by the supervision runner, so its candidate query
    applies this very code."""
    return now - silent_since(last_heard, enrolled_at, started_at)


@dataclass(frozen=True)
class DeviceView:
    """What supervision needs to know about one device (from the registry + device_state)."""

    device_id: int
    supervision_s: int
    last_heard: float | None
    supervision: str = OK  # persisted: OK | LOST
    battery_alarm: bool = False  # persisted: a 384 was raised and not yet restored
    low_battery: bool = False  # flag of the latest frame
    battery_mv: int | None = None
    last_counter: int | None = None  # highest counter heard (idempotency of the events)
    enrolled_at: float = 0.0  # last (re)enrollment: registration, rekey, new key/interval


@dataclass(frozen=True)
class SupervisionEvent:
    """An event to store and forward. ``state`` is the device_state change to persist."""

    event: str  # a dispatch_payload.EVENTS key
    code: int
    qualifier: int
    at: float
    device_id: int | None = None
    counter: int | None = None
    detail: str = ""
    state: dict[str, Any] = field(default_factory=dict)
    # The device state the rules decided on. The daemon decides on a snapshot and stores on
    # another thread: a frame stored in between makes the decision stale (silent -> lost
    # just as the device was heard), so the store drops it and the next tick decides again.
    basis: DeviceView | None = field(default=None, compare=False)


@dataclass
class Supervisor:
    """Supervision policy plus the little gateway-level state (check-in time, bridge)."""

    started_at: float
    grace_s: float = 300.0
    low_battery_mv: int | None = None
    hysteresis_mv: int = 100
    checkin_interval_s: float = 3600.0
    bridge_missing_s: float = 300.0
    last_checkin: float | None = None  # seed from the DB so a restart keeps the schedule
    bridge_trouble: bool = False  # seed from the DB likewise

    def limit_s(self, supervision_s: int) -> float:
        return 2 * supervision_s + self.grace_s

    def evaluate(self, devices: Iterable[DeviceView], now: float) -> list[SupervisionEvent]:
        """Supervision and battery events for these devices (at most one of each per device)."""
        out: list[SupervisionEvent] = []
        for d in devices:
            out.extend(self._device(d, now))
        return out

    def _device(self, d: DeviceView, now: float) -> list[SupervisionEvent]:
        out = []
        silent = silent_for(now, d.last_heard, d.enrolled_at, self.started_at)
        limit = self.limit_s(d.supervision_s)
        if d.supervision != LOST and silent > limit:
            out.append(SupervisionEvent(
                "supervision_lost", 381, 1, now, d.device_id, d.last_counter,
                f"silent for {silent:.0f} s (limit {limit:.0f} s = 2 x {d.supervision_s} s"
                f" + {self.grace_s:.0f} s grace)",
                {"supervision": LOST}, d,
            ))
        elif d.supervision == LOST and d.last_heard is not None and now - d.last_heard <= limit:
            out.append(SupervisionEvent(
                "supervision_restore", 381, 3, now, d.device_id, d.last_counter,
                "heard again", {"supervision": OK}, d,
            ))
        low = d.low_battery or (
            self.low_battery_mv is not None and d.battery_mv is not None
            and d.battery_mv < self.low_battery_mv
        )
        good = not d.low_battery and (
            self.low_battery_mv is None or d.battery_mv is None
            or d.battery_mv >= self.low_battery_mv + self.hysteresis_mv
        )
        volts = f"{d.battery_mv} mV" if d.battery_mv is not None else "unknown voltage"
        if low and not d.battery_alarm:
            out.append(SupervisionEvent(
                "low_battery", 384, 1, now, d.device_id, d.last_counter,
                f"low battery ({volts})", {"battery_alarm": True}, d,
            ))
        elif good and d.battery_alarm:
            out.append(SupervisionEvent(
                "low_battery_restore", 384, 3, now, d.device_id, d.last_counter,
                f"battery good ({volts})", {"battery_alarm": False}, d,
            ))
        return out

    def checkin(self, now: float) -> SupervisionEvent | None:
        """The periodic 602 when due (and then scheduled from ``now``), else None."""
        if self.last_checkin is not None and now - self.last_checkin < self.checkin_interval_s:
            return None
        interval = self.checkin_interval_s
        behind = self.last_checkin is None or now - self.last_checkin >= 2 * interval
        # on schedule: no drift by the tick period; far behind (gateway was off): restart now
        self.last_checkin = now if behind else self.last_checkin + interval
        return SupervisionEvent("gateway_checkin", 602, 1, now,
                                detail=f"periodic check-in every {self.checkin_interval_s:.0f} s",
                                state={"last_checkin": now})

    def next_checkin_at(self) -> float:
        return (self.started_at if self.last_checkin is None
                else self.last_checkin + self.checkin_interval_s)

    def bridge(self, now: float, last_seen: float | None,
               enabled: bool = True) -> SupervisionEvent | None:
        """330 when the bridge has been missing too long, 3330 when it is back."""
        if not enabled:
            return None
        missing = now - max(last_seen or 0.0, self.started_at)
        present = last_seen is not None and now - last_seen <= self.bridge_missing_s
        if not self.bridge_trouble and missing > self.bridge_missing_s:
            self.bridge_trouble = True
            return SupervisionEvent(
                "gateway_trouble", 330, 1, now,
                detail=f"LoRa bridge missing for {missing:.0f} s: no radio reception",
                state={"bridge_trouble": True},
            )
        if self.bridge_trouble and present:
            self.bridge_trouble = False
            return SupervisionEvent("gateway_trouble_restore", 330, 3, now,
                                    detail="LoRa bridge back", state={"bridge_trouble": False})
        return None

    def tick(self, devices: Iterable[DeviceView], now: float, *,
             bridge_last_seen: float | None = None,
             bridge_enabled: bool = True) -> list[SupervisionEvent]:
        """Everything due now: device events, bridge trouble, then the check-in."""
        out = self.evaluate(devices, now)
        b = self.bridge(now, bridge_last_seen, bridge_enabled)
        if b is not None:
            out.append(b)
        c = self.checkin(now)
        if c is not None:
            out.append(c)
        return out
