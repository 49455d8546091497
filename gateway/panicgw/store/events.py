"""Stored frames and what they belong to: events, the receptions of each (path, RSSI, SNR),
incidents (repeat presses of one button joined), and how ``panictool verify`` finds its TEST.
(``panicgw events``/``monitor``/``diag`` read through panicgw.store.inspect.)

The dedupe key is (device, key generation, counter): a rekey restarts the counter.
"""

from __future__ import annotations

from typing import Any

from panicgw.store.devices import DeviceRepository


class EventRepository(DeviceRepository):
    def insert_event(self, device_id: int, counter: int, kind: str, incident_id: str | None,
                     at: float, attempt: int, flags: int, battery_mv: int, frame: bytes,
                     key_gen: int = 1) -> int:
        """Store one accepted frame; ``key_gen``: the key generation it was verified with
        (a rekey restarts the counter, so (device, counter) alone is not unique)."""
        cur = self.db.execute(
            "INSERT INTO events (device_id, counter, kind, incident_id, received_at, attempt, "
            "flags, battery_mv, frame, key_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, counter, kind, incident_id, at, attempt, flags, battery_mv, frame,
             key_gen),
        )
        return int(cur.lastrowid or 0)

    def find_event(self, device_id: int, counter: int,
                   key_gen: int | None = None) -> tuple[int, str | None] | None:
        """(event id, incident id) of the stored frame (device, key generation, counter):
        the dedupe key. ``key_gen`` None: the device's current generation (1 when it is
        not registered). An event of another generation is another frame: the counter
        restarted with the key."""
        if key_gen is None:
            key_gen = self.device_key_gen(device_id) or 1
        row = self.db.execute(
            "SELECT id, incident_id FROM events WHERE device_id = ? AND counter = ? "
            "AND key_gen = ?",
            (device_id, counter, key_gen),
        ).fetchone()
        return (int(row[0]), row[1]) if row else None

    def dispatch_confirmed(self, event_id: int, incident_id: str | None) -> bool:
        """True when the event's dispatch message was delivered (dispatch answered 2xx):
        what a re-ACK's DELIVERED status promises (docs/protocol.md). Uses the incident
        index; an event without an incident (a heartbeat) has nothing to deliver."""
        if incident_id is None:
            return False
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE incident_id = ? AND event_id = ? "
            "AND state = 'delivered' LIMIT 1", (incident_id, event_id)).fetchone()
        return row is not None

    def add_reception(self, event_id: int, path: str, rssi: float | None, snr: float | None,
                      at: float, duplicate: bool) -> None:
        self.db.execute(
            "INSERT INTO receptions (event_id, path, rssi, snr, at, duplicate) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, path, rssi, snr, at, int(duplicate)),
        )

    def receptions(self, event_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT path, rssi, snr, at, duplicate FROM receptions WHERE event_id = ? "
            "ORDER BY id",
            (event_id,),
        ).fetchall()
        return [{"path": r[0], "rssi": r[1], "snr": r[2], "at": r[3], "duplicate": bool(r[4])}
                for r in rows]

    def open_incident(
        self, device_id: int, kind: str, since: float, key_gen: int = 1
    ) -> tuple[str, float, int] | None:
        """The device's latest incident of ``kind`` and key generation heard at or after
        ``since`` (presses under a new key never join an incident of the old one: its id
        names the old generation's counter)."""
        row = self.db.execute(
            "SELECT incident_id, first_heard, press_count FROM incidents "
            "WHERE device_id = ? AND kind = ? AND last_heard >= ? AND key_gen = ? "
            "ORDER BY last_heard DESC LIMIT 1",
            (device_id, kind, since, key_gen),
        ).fetchone()
        return (row[0], float(row[1]), int(row[2])) if row else None

    def create_incident(self, incident_id: str, device_id: int | None, kind: str,
                        at: float, key_gen: int = 1) -> None:
        self.db.execute(
            "INSERT INTO incidents (incident_id, device_id, kind, first_heard, last_heard, "
            "press_count, key_gen) VALUES (?, ?, ?, ?, ?, 1, ?)",
            (incident_id, device_id, kind, at, at, key_gen),
        )

    def touch_incident(self, incident_id: str, at: float) -> int:
        """Count one more press; returns the new press count."""
        self.db.execute(
            "UPDATE incidents SET last_heard = ?, press_count = press_count + 1 "
            "WHERE incident_id = ?",
            (at, incident_id),
        )
        row = self.db.execute(
            "SELECT press_count FROM incidents WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return int(row[0])

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT incident_id, device_id, kind, first_heard, last_heard, press_count "
            "FROM incidents WHERE incident_id = ?",
            (incident_id,),
        ).fetchone()
        if not row:
            return None
        keys = ("incident_id", "device_id", "kind", "first_heard", "last_heard", "press_count")
        return dict(zip(keys, row, strict=True))

    def recent_events(self, limit: int = 50, device_id: int | None = None) -> list[dict[str, Any]]:
        q = ("SELECT id, device_id, counter, kind, incident_id, received_at, battery_mv "
             "FROM events")
        args: tuple[Any, ...] = ()
        if device_id is not None:
            q += " WHERE device_id = ?"
            args = (device_id,)
        rows = self.db.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        keys = ("id", "device_id", "counter", "kind", "incident_id", "received_at", "battery_mv")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def raise_incident(self, incident_id: str, device_id: int | None, kind: str, at: float,
                       key_gen: int = 1) -> None:
        """An incident of one event (supervision's), unless it exists already."""
        self.db.execute(
            "INSERT OR IGNORE INTO incidents (incident_id, device_id, kind, first_heard, "
            "last_heard, press_count, key_gen) VALUES (?, ?, ?, ?, ?, 1, ?)",
            (incident_id, device_id, kind, at, at, key_gen))

    def frame_heard(self, device_id: int, counter: int
                    ) -> tuple[str, list[dict[str, Any]]] | None:
        """(event kind, receptions) of the frame (device, counter) of the device's current
        key generation (1 when it is not registered), or None. A rekey restarts the counter,
        so the same counter under an older key is another, older frame."""
        row = self.db.execute(
            "SELECT id, kind FROM events WHERE device_id = ? AND counter = ? AND key_gen = "
            "coalesce((SELECT key_gen FROM devices WHERE device_id = ?), 1)",
            (device_id, counter, device_id)).fetchone()
        if row is None:
            return None
        return str(row[1]), self.receptions(int(row[0]))
