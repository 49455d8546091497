"""Who works a line: one owner at a time. Taking is first come, first served; taking over
from another operator is explicit and recorded."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms import audit, feed
from panicconsole.alarms.rules import MAX_NOTE, ActionError


def alarm_row(conn: sqlite3.Connection, alarm_id: int) -> sqlite3.Row:
    r = conn.execute("SELECT a.*, u.username AS owner_name FROM alarms a LEFT JOIN users u "
                     "ON u.id = a.owner_id WHERE a.id = ?", (alarm_id,)).fetchone()
    if r is None:
        raise ActionError(404, "err_no_such_alarm")
    return r


def must_own(r: sqlite3.Row, user: dict[str, Any]) -> None:
    if r["state"] != "open":
        raise ActionError(409, "err_closed")
    if r["owner_id"] is None:
        raise ActionError(409, "err_take_first")
    if r["owner_id"] != user["id"]:
        raise ActionError(409, "err_owned_by", owner=r["owner_name"])


def take(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], now: float,
         remote: str = "") -> dict[str, Any]:
    """Own an unowned open line. Two operators at the same moment: the conditional UPDATE
    inside the single writer lets exactly one win; the other gets 409 with the owner."""
    r = alarm_row(conn, alarm_id)
    if r["state"] != "open":
        raise ActionError(409, "err_closed")
    cur = conn.execute("UPDATE alarms SET owner_id = ?, taken_at = ?, updated_at = ?, "
                       "escalation = NULL, version = version + 1 "
                       "WHERE id = ? AND owner_id IS NULL AND state = 'open'",
                       (user["id"], now, now, alarm_id))
    if cur.rowcount != 1:
        if r["owner_id"] == user["id"]:
            raise ActionError(409, "err_already_yours")
        raise ActionError(409, "err_owned_by", owner=r["owner_name"])
    audit.record(conn, now, user, "take", alarm_id, remote=remote)
    return feed.emit_alarm(conn, alarm_id, now)


def take_over(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], now: float,
              reason: str, remote: str = "") -> dict[str, Any]:
    """Take a line another operator owns: explicit, with the previous owner recorded."""
    r = alarm_row(conn, alarm_id)
    if r["state"] != "open":
        raise ActionError(409, "err_closed")
    if r["owner_id"] == user["id"]:
        raise ActionError(409, "err_already_yours")
    if r["owner_id"] is None:
        raise ActionError(409, "err_not_owned")
    reason = reason.strip()[:MAX_NOTE]
    conn.execute("UPDATE alarms SET owner_id = ?, taken_at = ?, updated_at = ?, "
                 "escalation = NULL, version = version + 1 WHERE id = ?",
                 (user["id"], now, now, alarm_id))
    audit.record(conn, now, user, "take_over", alarm_id,
                 f"from {r['owner_name']}" + (f": {reason}" if reason else ""), remote)
    return feed.emit_alarm(conn, alarm_id, now)
