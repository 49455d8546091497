"""What the owner does with a line: tick the action plan's steps, add notes, and close it
with a disposition code and a note (steps left unticked are named in the audit trail)."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms import audit, feed
from panicconsole.alarms.jsoncol import dumps, loads
from panicconsole.alarms.ownership import alarm_row, must_own
from panicconsole.alarms.rules import DISPOSITIONS, MAX_NOTE, ActionError


def tick(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], index: int, done: bool,
         now: float, remote: str = "") -> dict[str, Any]:
    r = alarm_row(conn, alarm_id)
    must_own(r, user)
    steps = loads(r["steps"], [])
    if not 0 <= index < len(steps):
        raise ActionError(400, "err_no_such_step")
    steps[index].update({"done": bool(done), "by": user["username"] if done else None,
                         "at": now if done else None})
    conn.execute("UPDATE alarms SET steps = ?, updated_at = ?, version = version + 1 "
                 "WHERE id = ?", (dumps(steps), now, alarm_id))
    text = steps[index]["text"]
    label = text.get("en") if isinstance(text, dict) else str(text)
    audit.record(conn, now, user, "step" if done else "step_unticked", alarm_id,
                 f"{index + 1}. {label}", remote)
    return feed.emit_alarm(conn, alarm_id, now)


def note(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], text: str, now: float,
         remote: str = "") -> dict[str, Any]:
    r = alarm_row(conn, alarm_id)
    must_own(r, user)
    text = text.strip()
    if not text:
        raise ActionError(400, "err_note_empty")
    audit.record(conn, now, user, "note", alarm_id, text[:MAX_NOTE], remote)
    conn.execute("UPDATE alarms SET updated_at = ?, version = version + 1 WHERE id = ?",
                 (now, alarm_id))
    return feed.emit_alarm(conn, alarm_id, now)


def close(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], disposition: str,
          text: str, now: float, remote: str = "") -> dict[str, Any]:
    """Close with a disposition code and a note (both required)."""
    r = alarm_row(conn, alarm_id)
    must_own(r, user)
    if disposition not in DISPOSITIONS:
        raise ActionError(400, "err_disposition")
    text = text.strip()
    if not text:
        raise ActionError(400, "err_note_empty")
    steps = loads(r["steps"], [])
    open_steps = [i + 1 for i, s in enumerate(steps) if not s.get("done")]
    conn.execute("UPDATE alarms SET state = 'closed', disposition = ?, note = ?, closed_at = ?, "
                 "closed_by = ?, updated_at = ?, version = version + 1 WHERE id = ?",
                 (disposition, text[:MAX_NOTE], now, user["id"], now, alarm_id))
    audit.record(conn, now, user, "close", alarm_id,
                 f"{disposition}: {text[:MAX_NOTE]}"
                 + (f" (steps not ticked: {', '.join(map(str, open_steps))})"
                    if open_steps else ""), remote)
    return feed.emit_alarm(conn, alarm_id, now)
