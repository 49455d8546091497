"""The audit trail: who did what to which line, from where; read back per line (the detail
pane) and exported as CSV for the supervisor."""

from __future__ import annotations

import csv
import io
import sqlite3
import time
from typing import Any


def record(conn: sqlite3.Connection, now: float, user: dict[str, Any], action: str,
           alarm_id: int | None = None, detail: str = "", remote: str = "") -> None:
    conn.execute("INSERT INTO audit (at, username, role, action, alarm_id, detail, remote) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (now, user["username"], user["role"], action, alarm_id, detail[:4000], remote))


def for_alarm(conn: sqlite3.Connection, alarm_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        "SELECT seq, at, username, role, action, detail FROM audit WHERE alarm_id = ? "
        "ORDER BY seq", (alarm_id,))]


def to_csv(rows: list[sqlite3.Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["seq", "time_utc", "user", "role", "action", "alarm_id", "detail", "remote"])
    for r in rows:
        w.writerow([r["seq"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["at"])),
                    r["username"], r["role"], r["action"],
                    "" if r["alarm_id"] is None else r["alarm_id"], r["detail"], r["remote"]])
    return buf.getvalue()
