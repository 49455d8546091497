"""What supervision and the heartbeat history need: each device's runtime state (last heard,
path, signal, battery, supervision state), the devices the supervision rules could act on
now, and pruning old heartbeats."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from panicgw.store.devices import DeviceRepository


class DeviceState(NamedTuple):
    device_id: int
    replay_highest: int
    replay_bitmap: int
    last_heard: float | None
    last_path: str | None
    last_rssi: float | None
    last_snr: float | None
    battery_mv: int | None
    low_battery: bool
    supervision: str
    battery_alarm: bool


class Candidate(NamedTuple):
    """A device the supervision rules could act on now (see :meth:`candidates`)."""

    device_id: int
    supervision_s: int
    last_heard: float | None
    supervision: str | None
    battery_alarm: bool
    low_battery: bool
    battery_mv: int | None
    replay_highest: int | None
    enrolled_at: float | None


# Devices of one supervision interval that the rules could act on now (a superset: the
# rules decide). Silence is judged by the rules' own function, registered on the connection
# as ``silent_for``, so query and rules cannot disagree on who is silent.
_CANDIDATES_SQL = """
SELECT d.device_id, s.last_heard, s.supervision, s.battery_alarm, s.low_battery,
       s.battery_mv, s.replay_highest, d.enrolled_at
FROM devices d LEFT JOIN device_state s ON s.device_id = d.device_id
WHERE d.supervision_s = :interval AND (
    silent_for(:now, s.last_heard, d.enrolled_at, :started) > :limit
    OR s.supervision != 'ok' OR s.battery_alarm = 1 OR s.low_battery = 1
    OR (:low_mv IS NOT NULL AND s.battery_mv < :low_mv))
"""

SilentFor = Callable[[float, "float | None", float, float], float]


class SupervisionRepository(DeviceRepository):

    def device_states(self) -> dict[int, DeviceState]:
        rows = self.db.execute(
            "SELECT device_id, replay_highest, replay_bitmap, last_heard, last_path, last_rssi, "
            "last_snr, battery_mv, low_battery, supervision, battery_alarm FROM device_state"
        ).fetchall()
        return {
            int(r[0]): DeviceState(int(r[0]), int(r[1]), int(r[2], 16), r[3], r[4], r[5], r[6],
                                   r[7], bool(r[8]), r[9], bool(r[10]))
            for r in rows
        }

    def device_state(self, device_id: int) -> DeviceState | None:
        return self.device_states_for([device_id]).get(device_id)

    def device_states_for(self, ids: list[int]) -> dict[int, DeviceState]:
        out: dict[int, DeviceState] = {}
        for i in ids:
            r = self.db.execute(
                "SELECT device_id, replay_highest, replay_bitmap, last_heard, last_path, "
                "last_rssi, last_snr, battery_mv, low_battery, supervision, battery_alarm "
                "FROM device_state WHERE device_id = ?",
                (i,),
            ).fetchone()
            if r:
                out[i] = DeviceState(int(r[0]), int(r[1]), int(r[2], 16), r[3], r[4], r[5],
                                     r[6], r[7], bool(r[8]), r[9], bool(r[10]))
        return out

    def heard(self, device_id: int, at: float, path: str, rssi: float | None,
              snr: float | None, battery_mv: int, low_battery: bool) -> None:
        self.db.execute(
            "UPDATE device_state SET last_heard = ?, last_path = ?, last_rssi = ?, "
            "last_snr = ?, battery_mv = ?, low_battery = ? WHERE device_id = ?",
            (at, path, rssi, snr, battery_mv, int(low_battery), device_id),
        )

    def set_supervision(self, device_id: int, supervision: str | None = None,
                        battery_alarm: bool | None = None) -> None:
        if supervision is not None:
            self.db.execute(
                "UPDATE device_state SET supervision = ? WHERE device_id = ?",
                (supervision, device_id),
            )
        if battery_alarm is not None:
            self.db.execute(
                "UPDATE device_state SET battery_alarm = ? WHERE device_id = ?",
                (int(battery_alarm), device_id),
            )

    def candidates(self, now: float, started: float, limit_s: Callable[[int], float],
                   low_mv: int | None, silent_for: SilentFor) -> list[Candidate]:
        """Devices that could raise or clear something at ``now``: silent past
        ``limit_s(their interval)`` by ``silent_for(now, last_heard, enrolled_at, started)``,
        already lost, or with a low or alarmed battery. One query per distinct interval."""
        self.db.create_function("silent_for", 4, silent_for, deterministic=True)
        out = []
        intervals = [int(r[0]) for r in self.db.execute(
            "SELECT DISTINCT supervision_s FROM devices")]
        for interval in intervals:
            args = {"interval": interval, "now": now, "started": started,
                    "limit": limit_s(interval), "low_mv": low_mv}
            for r in self.db.execute(_CANDIDATES_SQL, args):
                out.append(Candidate(int(r[0]), interval, r[1], r[2], bool(r[3]), bool(r[4]),
                                     r[5], r[6], r[7]))
        return out

    def prune_heartbeats(self, older_than: float) -> int:
        """Drop heartbeat history older than ``older_than``; never anything with an outbox row
        that is still pending."""
        with self.transaction():
            cur = self.db.execute(
                "DELETE FROM events WHERE kind = 'heartbeat' AND received_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.event_id = events.id AND o.state = 'pending')",
                (older_than,),
            )
        return cur.rowcount
