"""The site card's history: the site's recent lines, how they were closed, and its last
events (a site with many false alarms reads differently)."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms.views import log_view


def site_history(conn: sqlite3.Connection, skey: str | None, now: float,
                 days: int = 90) -> dict[str, Any]:
    if not skey:
        return {"days": days, "alarms": [], "false_alarms": 0, "real_alarms": 0, "events": []}
    since = now - days * 86400
    rows = conn.execute(
        "SELECT id, event, state, disposition, opened_at, closed_at, press_count FROM alarms "
        "WHERE site_key = ? AND opened_at >= ? ORDER BY opened_at DESC LIMIT 20",
        (skey, since)).fetchall()
    counts = dict(conn.execute(
        "SELECT disposition, COUNT(*) FROM alarms WHERE site_key = ? AND opened_at >= ? AND "
        "state = 'closed' GROUP BY disposition", (skey, since)).fetchall())
    events = conn.execute(
        "SELECT * FROM messages WHERE site_key = ? ORDER BY id DESC LIMIT 15",
        (skey,)).fetchall()
    return {"days": days, "alarms": [dict(r) for r in rows],
            "false_alarms": int(counts.get("false", 0)),
            "real_alarms": int(counts.get("real", 0)),
            "events": [log_view(e) for e in events]}
