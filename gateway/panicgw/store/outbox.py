"""The outbox: dispatch messages waiting to be sent, delivered ones, and dead letters (refused
for good, until a technician requeues them). The forwarder (panicgw.forward) drains it
through :class:`OutboxRepository`'s ``due``/``delivered``/``reschedule``/``dead_letter``.

An event and its outbox row are written in ONE transaction (panicgw.pipeline), so a crash
keeps both or neither; nothing with an undelivered outbox row is ever pruned.
Priorities: a smaller number is more urgent (``PRIO_ALARM`` = 0 first).
"""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from panicgw.store.routes import RouteRepository

PRIO_ALARM = 0
PRIO_EVENT = 1  # tamper, cancel, test
PRIO_TROUBLE = 2  # supervision lost/restore, low battery, bridge trouble
PRIO_OTHER = 3  # periodic check-in, heartbeats and everything else


class OutboxItem(NamedTuple):
    """One dispatch message waiting, as forwarder.OutboxStore hands it out."""

    id: int
    incident_id: str
    priority: int
    payload: dict[str, Any]
    attempts: int
    created_at: float


class OutboxRepository(RouteRepository):
    def enqueue(self, incident_id: str, priority: int, payload: dict[str, Any], at: float,
                event_id: int | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox (incident_id, event_id, priority, payload, created_at, next_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, event_id, priority, json.dumps(payload, separators=(",", ":")), at,
             at),
        )
        item_id = int(cur.lastrowid or 0)
        if self.routes:  # the other routes' rows, in the caller's transaction
            self.add_routes(item_id, at)
        return item_id

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        """Pending items whose retry time has come: most urgent priority first, then oldest."""
        rows = self.db.execute(
            "SELECT id, incident_id, priority, payload, attempts, created_at FROM outbox "
            "WHERE state = 'pending' AND next_at <= ? "
            "ORDER BY priority, created_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [OutboxItem(int(r[0]), r[1], int(r[2]), json.loads(r[3]), int(r[4]), float(r[5]))
                for r in rows]

    def delivered(self, item_id: int, at: float, status: int, body: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, http_status = ?, "
                "response = ?, attempts = attempts + 1 WHERE id = ?",
                (at, status, body[:4000], item_id),
            )

    def reschedule(self, item_id: int, at: float, error: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET next_at = ?, last_error = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'pending'",
                (at, error[:1000], item_id),
            )

    def dead_letter(self, item_id: int, at: float, reason: str) -> None:
        with self.transaction():
            row = self.db.execute(
                "SELECT incident_id, payload FROM outbox WHERE id = ?", (item_id,)
            ).fetchone()
            if row is None:
                return
            self.db.execute(
                "UPDATE outbox SET state = 'dead', last_error = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (reason[:1000], item_id),
            )
            self.db.execute(
                "INSERT INTO dead_letters (outbox_id, incident_id, payload, reason, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (item_id, row[0], row[1], reason[:1000], at),
            )

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters not requeued since, newest first."""
        rows = self.db.execute(
            "SELECT outbox_id, incident_id, reason, at FROM dead_letters "
            "WHERE requeued_at IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [{"outbox_id": r[0], "incident_id": r[1], "reason": r[2], "at": r[3]}
                for r in rows]

    def outbox_list(self, states: tuple[str, ...] = ("pending", "dead"),
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Outbox rows in ``states`` for `panicgw outbox list`: most urgent first, then oldest.
        ``dead_at``/``dead_reason`` come from the row's latest dead letter."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            "SELECT o.id, o.incident_id, o.priority, o.state, o.attempts, o.created_at, "
            "o.next_at, o.last_error, o.requeues, json_extract(o.payload, '$.event'), "
            "(SELECT max(d.at) FROM dead_letters d WHERE d.outbox_id = o.id) "
            f"FROM outbox o WHERE o.state IN ({marks}) "
            "ORDER BY o.priority, o.created_at, o.id LIMIT ?",
            (*states, limit),
        ).fetchall()
        keys = ("id", "incident_id", "priority", "state", "attempts", "created_at", "next_at",
                "last_error", "requeues", "event", "dead_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def requeue(self, item_ids: list[int] | None, at: float) -> list[int]:
        """Move dead items (``None``: every dead item) back to pending, due at ``at``, with
        attempts reset so the forwarder's backoff starts over; their dead letters are marked
        requeued. Returns the ids moved; ids that are not dead are left alone."""
        with self.transaction():
            if item_ids is None:
                ids = [int(r[0]) for r in self.db.execute(
                    "SELECT id FROM outbox WHERE state = 'dead' ORDER BY id")]
            else:
                ids = [i for i in dict.fromkeys(item_ids) if self.db.execute(
                    "SELECT 1 FROM outbox WHERE id = ? AND state = 'dead'", (i,)).fetchone()]
            for i in ids:
                self.db.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, "
                    "requeues = requeues + 1, last_error = substr('requeued (was: ' || "
                    "coalesce(last_error, '?') || ')', 1, 1000) WHERE id = ?",
                    (at, i),
                )
                self.db.execute(
                    "UPDATE dead_letters SET requeued_at = ? WHERE outbox_id = ? "
                    "AND requeued_at IS NULL",
                    (at, i),
                )
        return ids

    def outbox_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "dead": 0, "pending_alarms": 0}
        for state, n in self.db.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            counts[state] = int(n)
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending' AND priority = ?", (PRIO_ALARM,)
        ).fetchone()
        counts["pending_alarms"] = int(row[0])
        return counts

    def outbox_rows(self, state: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, incident_id, event_id, priority, payload, attempts, state FROM outbox"
        args: tuple[Any, ...] = ()
        if state:
            q += " WHERE state = ?"
            args = (state,)
        rows = self.db.execute(q + " ORDER BY id", args).fetchall()
        return [{"id": r[0], "incident_id": r[1], "event_id": r[2], "priority": r[3],
                 "payload": json.loads(r[4]), "attempts": r[5], "state": r[6]} for r in rows]
