"""Read-only views of the gateway DB for the technician's commands (`panicgw diag`, its
support bundle, `monitor`, `events`) and the demo's summary: every question they ask the
DB, in one place.

Why a module of its own: these readers run beside the daemon on a connection opened
read-only (``mode=ro``: nothing they do can change what the daemon stores), and they must
read every schema a field gateway may still have, so the column probing for older schemas
lives here with the queries, not in the checks that word the findings.
"""

from __future__ import annotations

import os
import sqlite3
from typing import Any, NamedTuple

from panicgw.store import Store

# What any query here may raise (a locked, damaged or foreign DB): callers catch this, not
# the engine's exception, and so need not know there is SQL underneath.
ReadError = sqlite3.Error


class Backlog(NamedTuple):
    """Pending outbox messages: all of them, and the alarms (priority 0) among them."""

    pending: int
    oldest: float | None
    alarms: int
    oldest_alarm: float | None
    last_error: str | None  # of the most urgent pending message that has one


class DeadLetter(NamedTuple):
    incident_id: str
    reason: str
    at: float
    priority: int | None
    outbox_id: int


class Watched(NamedTuple):
    """A registered device with what supervision judges it by."""

    device_id: int
    label: str | None
    site: str
    supervision_s: int
    enrolled_at: float
    last_heard: float | None
    supervision: str | None
    low_battery: int | None
    battery_mv: int | None
    battery_alarm: int | None


class AtCounter(NamedTuple):
    device_id: int
    label: str | None
    site: str
    replay_highest: int


class Reception(NamedTuple):
    """One heard copy of a stored frame, with its event and device (monitor's DB mode)."""

    id: int
    at: float
    path: str
    rssi: float | None
    snr: float | None
    duplicate: int
    device_id: int
    counter: int
    kind: str
    incident_id: str | None
    battery_mv: int | None
    attempt: int
    label: str | None
    site: str | None


DEVICE_STATS = ("device_id", "label", "site", "kind", "paths", "supervision_s", "firmware",
                "registered_at", "last_heard", "last_path", "last_rssi", "last_snr",
                "battery_mv", "low_battery", "supervision")


def query_events(db: sqlite3.Connection, *, device: int | None = None, site: str | None = None,
                 since: float | None = None, until: float | None = None,
                 kind: str | None = None, limit: int = 50,
                 after_id: int | None = None) -> list[dict[str, Any]]:
    """Newest first (oldest first with ``after_id``, for following); each with its receptions
    (path, RSSI, SNR) and the device's label and site."""
    where: list[str] = []
    args: list[Any] = []
    if device is not None:
        where.append("e.device_id = ?")
        args.append(device)
    if site:
        where.append("(s.name LIKE ? ESCAPE '\\' OR s.address LIKE ? ESCAPE '\\')")
        pat = "%" + site.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"
        args += [pat, pat]
    if since is not None:
        where.append("e.received_at >= ?")
        args.append(since)
    if until is not None:
        where.append("e.received_at <= ?")
        args.append(until)
    if kind:
        where.append("e.kind = ?")
        args.append(kind)
    if after_id is not None:
        where.append("e.id > ?")
        args.append(after_id)
    q = ("SELECT e.id, e.device_id, e.counter, e.kind, e.incident_id, e.received_at, e.attempt, "
         "e.flags, e.battery_mv, d.label, s.name, s.address FROM events e "
         "LEFT JOIN devices d ON d.device_id = e.device_id "
         "LEFT JOIN sites s ON s.id = d.site_id")
    if where:
        q += " WHERE " + " AND ".join(where)
    q += " ORDER BY e.id " + ("ASC" if after_id is not None else "DESC") + " LIMIT ?"
    args.append(limit)
    keys = ("id", "device_id", "counter", "kind", "incident_id", "received_at", "attempt",
            "flags", "battery_mv", "label", "site", "address")
    out = [dict(zip(keys, r, strict=True)) for r in db.execute(q, args).fetchall()]
    for ev in out:
        ev["receptions"] = [
            {"path": p, "rssi": rssi, "snr": snr, "at": at, "duplicate": bool(dup)}
            for p, rssi, snr, at, dup in db.execute(
                "SELECT path, rssi, snr, at, duplicate FROM receptions WHERE event_id = ? "
                "ORDER BY id", (ev["id"],))]
    return out


class Inspector:
    """Named read-only queries on one connection. Every method may raise :data:`ReadError`;
    the caller says what that means to the technician."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Inspector:
        """The existing gateway DB at ``path``, read-only, its schema checked (never created,
        as every tool opens it: panicgw.access). Raises StoreError or ReadError."""
        db = Store(path, create=False, readonly=True).db
        try:
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except sqlite3.Error:
            db.close()
            raise
        return cls(db)

    def close(self) -> None:
        self.db.close()

    def _columns(self, table: str) -> set[str]:
        return {r[1] for r in self.db.execute(f'PRAGMA table_info("{table}")')}

    # -- the DB itself ------------------------------------------------------------------

    def integrity(self, max_errors: int = 20) -> tuple[list[str], int]:
        """(SQLite's integrity_check lines, ``["ok"]`` when sound; schema version)."""
        rows = [r[0] for r in self.db.execute(f"PRAGMA integrity_check({int(max_errors)})")]
        return rows, int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def newest_record_time(self) -> float | None:
        """The latest time any record carries (event, outbox message, device heard)."""
        row = self.db.execute(
            "SELECT max(t) FROM (SELECT max(received_at) AS t FROM events UNION ALL "
            "SELECT max(created_at) FROM outbox UNION ALL "
            "SELECT max(last_heard) FROM device_state)").fetchone()
        return row[0]

    def stats(self) -> dict[str, Any]:
        """Sizes, row counts and state, with no keys and no payloads (the support bundle)."""
        db = self.db
        out: dict[str, Any] = {
            "schema_version": db.execute("PRAGMA user_version").fetchone()[0],
            "page_count": db.execute("PRAGMA page_count").fetchone()[0],
            "freelist_count": db.execute("PRAGMA freelist_count").fetchone()[0]}
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out["rows"] = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                       for t in tables}
        out["outbox"] = {s: n for s, n in db.execute(
            "SELECT state, count(*) FROM outbox GROUP BY state")}
        out["rejections"] = [{"reason": r, "count": n, "last_at": a} for r, n, a in
                             db.execute("SELECT reason, count, last_at FROM rejections")]
        out["dead_letters"] = [{"outbox_id": o, "incident_id": i, "reason": r, "at": a}
                               for o, i, r, a in db.execute(
                                   "SELECT outbox_id, incident_id, reason, at FROM dead_letters "
                                   "ORDER BY id DESC LIMIT 200")]
        out["devices"] = [dict(zip(DEVICE_STATS, r, strict=True)) for r in db.execute(
            "SELECT d.device_id, d.label, s.name, s.kind, d.paths, d.supervision_s, d.firmware, "
            "d.registered_at, st.last_heard, st.last_path, st.last_rssi, st.last_snr, "
            "st.battery_mv, st.low_battery, st.supervision FROM devices d JOIN sites s ON "
            "s.id = d.site_id LEFT JOIN device_state st ON st.device_id = d.device_id")]
        return out

    # -- devices --------------------------------------------------------------------------

    def device_keys(self) -> list[bytes]:
        """Every device key (for the redactor: never printed)."""
        return [bytes(k) for (k,) in self.db.execute("SELECT key FROM devices")]

    def key_gen(self, device_id: int) -> int | None:
        row = self.db.execute("SELECT key_gen FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        return row[0] if row else None

    def watched(self) -> list[Watched]:
        """Every registered device with its supervision state, by device id."""
        enrolled = ("d.enrolled_at" if "enrolled_at" in self._columns("devices")
                    else "d.registered_at")  # schema < v3
        return [Watched(*r) for r in self.db.execute(
            f"SELECT d.device_id, d.label, s.name, d.supervision_s, {enrolled}, st.last_heard, "
            "st.supervision, st.low_battery, st.battery_mv, st.battery_alarm FROM devices d "
            "JOIN sites s ON s.id = d.site_id LEFT JOIN device_state st ON "
            "st.device_id = d.device_id ORDER BY d.device_id")]

    def at_counter(self, floor: int) -> list[AtCounter]:
        """Devices whose highest accepted counter is at least ``floor``."""
        return [AtCounter(*r) for r in self.db.execute(
            "SELECT d.device_id, d.label, s.name, st.replay_highest FROM devices d "
            "JOIN sites s ON s.id = d.site_id JOIN device_state st ON "
            "st.device_id = d.device_id WHERE st.replay_highest >= ? ORDER BY d.device_id",
            (floor,))]

    def label(self, device_id: int) -> tuple[str | None, str | None] | None:
        """(label, site name) of a registered device, None when it is not registered."""
        row = self.db.execute("SELECT d.label, s.name FROM devices d JOIN sites s ON "
                              "s.id = d.site_id WHERE d.device_id = ?", (device_id,)).fetchone()
        return (row[0], row[1]) if row else None

    # -- outbox -----------------------------------------------------------------------------

    def backlog(self) -> Backlog:
        n, oldest = self.db.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'").fetchone()
        na, oldest_alarm = self.db.execute(
            "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending' AND "
            "priority = 0").fetchone()
        err = self.db.execute(
            "SELECT last_error FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL "
            "ORDER BY priority, created_at LIMIT 1").fetchone()
        return Backlog(n, oldest, na, oldest_alarm, err[0] if err else None)

    def dead_letters_since(self, since: float) -> tuple[int, list[DeadLetter]]:
        """(all dead letters, those since ``since`` newest first); requeued ones
        (`panicgw outbox requeue`, schema v2) are pending again and count in neither."""
        live = " AND d.requeued_at IS NULL" if "requeued_at" in self._columns(
            "dead_letters") else ""
        total = self.db.execute(
            f"SELECT count(*) FROM dead_letters d WHERE 1{live}").fetchone()[0]
        rows = self.db.execute(
            "SELECT d.incident_id, d.reason, d.at, o.priority, d.outbox_id FROM dead_letters d "
            f"LEFT JOIN outbox o ON o.id = d.outbox_id WHERE d.at >= ?{live} "
            "ORDER BY d.at DESC", (since,)).fetchall()
        return total, [DeadLetter(*r) for r in rows]

    # -- rejections and frames -------------------------------------------------------------

    def rejections(self) -> list[tuple[str, int, float]]:
        """(reason, count, last seen) per rejection reason: the stored totals."""
        return [(r, int(n), at) for r, n, at in self.db.execute(
            "SELECT reason, count, last_at FROM rejections")]

    def rejected(self, reason: str) -> int:
        return int(self.db.execute(
            "SELECT coalesce(sum(count), 0) FROM rejections WHERE reason = ?",
            (reason,)).fetchone()[0])

    def last_event_id(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(id), 0) FROM events").fetchone()[0])

    def last_reception_id(self) -> int:
        return int(self.db.execute("SELECT coalesce(max(id), 0) FROM receptions").fetchone()[0])

    def receptions_after(self, after_id: int, limit: int = 1000) -> list[Reception]:
        """Heard copies newer than ``after_id``, oldest first."""
        return [Reception(*r) for r in self.db.execute(
            "SELECT r.id, r.at, r.path, r.rssi, r.snr, r.duplicate, e.device_id, e.counter, "
            "e.kind, e.incident_id, e.battery_mv, e.attempt, d.label, s.name FROM receptions r "
            "JOIN events e ON e.id = r.event_id LEFT JOIN devices d ON "
            "d.device_id = e.device_id LEFT JOIN sites s ON s.id = d.site_id WHERE r.id > ? "
            "ORDER BY r.id LIMIT ?", (after_id, limit))]

    def paths_heard(self, device_id: int, counter: int) -> list[str]:
        """The path of every copy heard of the stored frame (device, counter), in order."""
        return [p for (p,) in self.db.execute(
            "SELECT r.path FROM receptions r JOIN events e ON e.id = r.event_id "
            "WHERE e.device_id = ? AND e.counter = ? ORDER BY r.id", (device_id, counter))]

    def heartbeats(self) -> tuple[int, int]:
        """(heartbeats stored, devices they came from)."""
        n, devices = self.db.execute("SELECT count(*), count(DISTINCT device_id) FROM events "
                                     "WHERE kind = 'heartbeat'").fetchone()
        return int(n), int(devices)

    def devices_heard(self) -> int:
        """Registered devices heard at least once."""
        return int(self.db.execute("SELECT count(*) FROM device_state WHERE last_heard IS "
                                   "NOT NULL").fetchone()[0])

    def events(self, limit: int) -> list[dict[str, Any]]:
        """The newest ``limit`` events with their receptions (:func:`query_events`)."""
        return query_events(self.db, limit=limit)
