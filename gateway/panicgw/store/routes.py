"""Delivery routes beside dispatch: per-route state of outbox items (schema v5).

The outbox row's own ``state`` is the JSON dispatch route and is untouched here. A route
named in :attr:`RouteRepository.routes` (``sia:<name>``, set by the daemon from
``[[sia]]``) gets a row per item, written by ``enqueue`` in the caller's transaction, so the
event, its dispatch row and its route rows are committed together or not at all.

DC-09 sequence numbers: :meth:`RouteRepository.take_route_seq` advances the route's counter
and records the item's number in ONE transaction before the first send; an item that has
one keeps it, so a resend after a crash carries the same number (receivers deduplicate on
it).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from panicgw.store.connection import Connection

SEQ_LAST = 9999  # DC-09: 0001..9999, then 0001 again


class RouteItem(NamedTuple):
    """One outbox item waiting on one route."""

    id: int
    incident_id: str
    priority: int
    payload: dict[str, Any]
    attempts: int
    created_at: float
    seq: int | None


class RouteRepository(Connection):
    # The routes beside dispatch that new outbox items get (the daemon sets this on the
    # writer's store); empty: only dispatch, as before v5.
    routes: tuple[str, ...] = ()

    def add_routes(self, outbox_id: int, at: float) -> None:
        """Route rows for a new item (inside the caller's transaction)."""
        self.db.executemany(
            "INSERT OR IGNORE INTO outbox_routes (outbox_id, route, next_at) VALUES (?, ?, ?)",
            [(outbox_id, r, at) for r in self.routes])

    def route_due(self, route: str, now: float, limit: int) -> list[RouteItem]:
        """Items pending on ``route`` whose retry time has come: most urgent first, oldest."""
        rows = self.db.execute(
            "SELECT o.id, o.incident_id, o.priority, o.payload, r.attempts, o.created_at, r.seq "
            "FROM outbox_routes r JOIN outbox o ON o.id = r.outbox_id "
            "WHERE r.route = ? AND r.state = 'pending' AND r.next_at <= ? "
            "ORDER BY o.priority, o.created_at, o.id LIMIT ?",
            (route, now, limit)).fetchall()
        return [RouteItem(int(r[0]), r[1], int(r[2]), json.loads(r[3]), int(r[4]), float(r[5]),
                          None if r[6] is None else int(r[6])) for r in rows]

    def take_route_seq(self, route: str, outbox_id: int | None = None) -> int:
        """The item's sequence number on ``route``: the stored one, else the route's next
        (counter and item written in one transaction). ``outbox_id=None``: a number for a
        message that is not an outbox item (a link test)."""
        with self.transaction():
            if outbox_id is not None:
                row = self.db.execute(
                    "SELECT seq FROM outbox_routes WHERE outbox_id = ? AND route = ?",
                    (outbox_id, route)).fetchone()
                if row is None:
                    raise KeyError(f"outbox item {outbox_id} has no route {route!r}")
                if row[0] is not None:
                    return int(row[0])
            row = self.db.execute("SELECT last FROM route_sequences WHERE route = ?",
                                  (route,)).fetchone()
            last = int(row[0]) if row else 0
            seq = 1 if last >= SEQ_LAST else last + 1
            self.db.execute(
                "INSERT INTO route_sequences (route, last) VALUES (?, ?) "
                "ON CONFLICT (route) DO UPDATE SET last = excluded.last", (route, seq))
            if outbox_id is not None:
                self.db.execute("UPDATE outbox_routes SET seq = ? WHERE outbox_id = ? AND "
                                "route = ?", (seq, outbox_id, route))
            return seq

    def route_seq(self, route: str) -> int:
        """The route's last sequence number handed out (0: none yet)."""
        row = self.db.execute("SELECT last FROM route_sequences WHERE route = ?",
                              (route,)).fetchone()
        return int(row[0]) if row else 0

    def route_delivered(self, outbox_id: int, route: str, at: float, detail: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox_routes SET state = 'delivered', delivered_at = ?, "
                "last_error = NULL, attempts = attempts + 1 WHERE outbox_id = ? AND route = ?",
                (at, outbox_id, route))

    def route_reschedule(self, outbox_id: int, route: str, at: float, error: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox_routes SET next_at = ?, last_error = ?, attempts = attempts + 1 "
                "WHERE outbox_id = ? AND route = ? AND state = 'pending'",
                (at, error[:1000], outbox_id, route))

    def route_dead(self, outbox_id: int, route: str, reason: str) -> None:
        """Refused for good on this route (never an alarm: the caller keeps those)."""
        with self.transaction():
            self.db.execute(
                "UPDATE outbox_routes SET state = 'dead', last_error = ?, "
                "attempts = attempts + 1 WHERE outbox_id = ? AND route = ?",
                (reason[:1000], outbox_id, route))

    def route_counts(self) -> dict[str, dict[str, int]]:
        """Per route: items by state and pending alarms (priority 0)."""
        out: dict[str, dict[str, int]] = {}
        for route, state, n, alarms in self.db.execute(
                "SELECT r.route, r.state, count(*), sum(o.priority = 0) FROM outbox_routes r "
                "JOIN outbox o ON o.id = r.outbox_id GROUP BY r.route, r.state"):
            c = out.setdefault(route, {"pending": 0, "delivered": 0, "dead": 0,
                                       "pending_alarms": 0})
            c[state] = int(n)
            if state == "pending":
                c["pending_alarms"] = int(alarms or 0)
        return out

    def route_list(self, states: tuple[str, ...] = ("pending", "dead"),
                   limit: int = 1000) -> list[dict[str, Any]]:
        """Route rows in ``states`` for `panicgw outbox list`: most urgent first, oldest."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            "SELECT r.outbox_id, r.route, o.incident_id, o.priority, r.state, r.attempts, "
            "o.created_at, r.next_at, r.last_error, r.seq, json_extract(o.payload, '$.event') "
            f"FROM outbox_routes r JOIN outbox o ON o.id = r.outbox_id WHERE r.state IN ({marks}) "
            "ORDER BY o.priority, o.created_at, o.id, r.route LIMIT ?",
            (*states, limit)).fetchall()
        keys = ("id", "route", "incident_id", "priority", "state", "attempts", "created_at",
                "next_at", "last_error", "seq", "event")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def route_requeue(self, route: str, item_ids: list[int] | None, at: float) -> list[int]:
        """Move ``route``'s dead rows (``None``: all of them) back to pending, due at ``at``,
        attempts reset (`panicgw outbox requeue --route`). The sequence number stays: the
        receiver may have seen it. Returns the ids moved; others are left alone."""
        with self.transaction():
            if item_ids is None:
                ids = [int(r[0]) for r in self.db.execute(
                    "SELECT outbox_id FROM outbox_routes WHERE route = ? AND state = 'dead' "
                    "ORDER BY outbox_id", (route,))]
            else:
                ids = [i for i in dict.fromkeys(item_ids) if self.db.execute(
                    "SELECT 1 FROM outbox_routes WHERE outbox_id = ? AND route = ? AND "
                    "state = 'dead'", (i, route)).fetchone()]
            for i in ids:
                self.db.execute(
                    "UPDATE outbox_routes SET state = 'pending', attempts = 0, next_at = ?, "
                    "last_error = substr('requeued (was: ' || coalesce(last_error, '?') || ')',"
                    " 1, 1000) WHERE outbox_id = ? AND route = ?", (at, i, route))
        return ids
