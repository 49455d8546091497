"""Escalation: a line nobody takes, or one taken and left open, is raised once each way to
the supervisors' screen (and louder on every screen)."""

from __future__ import annotations

import sqlite3

from panicconsole.alarms import audit, feed
from panicconsole.alarms.rules import SYSTEM


def escalate_due(conn: sqlite3.Connection, now: float, take_within_s: float,
                 close_within_s: float) -> list[int]:
    """Lines not taken within ``take_within_s`` ('unattended') or taken but not closed within
    ``close_within_s`` ('overdue') escalate once each way; returns the escalated ids."""
    out = []
    for r in conn.execute(
            "SELECT id FROM alarms WHERE state = 'open' AND restored_at IS NULL AND "
            "owner_id IS NULL AND escalation IS NULL AND opened_at <= ?",
            (now - take_within_s,)).fetchall():
        conn.execute("UPDATE alarms SET escalation = 'unattended', escalated_at = ?, "
                     "version = version + 1 WHERE id = ?", (now, r[0]))
        audit.record(conn, now, SYSTEM, "escalate", r[0],
                     f"not taken within {int(take_within_s)} s")
        feed.emit_alarm(conn, r[0], now)
        out.append(r[0])
    for r in conn.execute(
            "SELECT id FROM alarms WHERE state = 'open' AND owner_id IS NOT NULL AND "
            "COALESCE(escalation, '') != 'overdue' AND taken_at <= ?",
            (now - close_within_s,)).fetchall():
        conn.execute("UPDATE alarms SET escalation = 'overdue', escalated_at = ?, "
                     "version = version + 1 WHERE id = ?", (now, r[0]))
        audit.record(conn, now, SYSTEM, "escalate", r[0],
                     f"taken but not closed within {int(close_within_s // 60)} min")
        feed.emit_alarm(conn, r[0], now)
        out.append(r[0])
    return out
