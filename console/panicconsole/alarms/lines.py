"""Queue lines: opening one (with the action plan its site and event have at that moment),
updating one with a repeat, and finding the open line a document belongs to."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole import plans as plans_mod
from panicconsole.alarms.jsoncol import dumps
from panicconsole.alarms.rules import PRIORITY


def open_line(conn: sqlite3.Connection, now: float, *, incident_id: str, event: str,
              category: str, gateway_id: str, body: dict[str, Any] | None,
              skey: str | None, device_id: str | None, detail: str = "") -> int:
    site = (body or {}).get("site")
    steps = plans_mod.steps_for(conn, skey, event)
    cid = ((body or {}).get("contact_id") or {}).get("display", "")
    times = (body or {}).get("times") or {}
    cur = conn.execute(
        "INSERT INTO alarms (incident_id, event, category, priority, state, site_key, "
        "device_id, gateway_id, contact_id, site, device, paths, press_count, first_heard, "
        "last_heard, opened_at, updated_at, steps, detail) VALUES (?, ?, ?, ?, 'open', ?, ?, ?, "
        "?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (incident_id, event, category, PRIORITY[event], skey, device_id, gateway_id, cid,
         dumps(site) if site else None,
         dumps((body or {}).get("device")) if (body or {}).get("device") else None,
         dumps((body or {}).get("paths") or []), int((body or {}).get("press_count") or 1),
         times.get("first_heard"), times.get("last_heard"), now, now,
         dumps([{"text": s, "done": False, "by": None, "at": None} for s in steps]),
         detail or (body or {}).get("detail", "")))
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


def update_line(conn: sqlite3.Connection, alarm_id: int, body: dict[str, Any],
                now: float) -> None:
    times = body.get("times") or {}
    conn.execute(
        "UPDATE alarms SET press_count = MAX(press_count, ?), "
        "last_heard = CASE WHEN ? > COALESCE(last_heard, '') THEN ? ELSE last_heard END, "
        "paths = ?, device = COALESCE(?, device), site = COALESCE(?, site), "
        "restored_at = NULL, updated_at = ?, version = version + 1 WHERE id = ?",
        (int(body.get("press_count") or 1), times.get("last_heard") or "",
         times.get("last_heard"), dumps(body.get("paths") or []),
         dumps(body["device"]) if body.get("device") else None,
         dumps(body["site"]) if body.get("site") else None, now, alarm_id))


def find_open(conn: sqlite3.Connection, event: str, *, incident_id: str | None = None,
              device_id: str | None = None, gateway_id: str | None = None) -> int | None:
    if incident_id is not None:
        r = conn.execute("SELECT id FROM alarms WHERE state = 'open' AND incident_id = ?",
                         (incident_id,)).fetchone()
        if r:
            return int(r[0])
    if device_id is not None:
        r = conn.execute("SELECT id FROM alarms WHERE state = 'open' AND event = ? AND "
                         "device_id = ? ORDER BY id DESC LIMIT 1", (event, device_id)).fetchone()
        return int(r[0]) if r else None
    if gateway_id is not None:
        r = conn.execute("SELECT id FROM alarms WHERE state = 'open' AND event = ? AND "
                         "gateway_id = ? AND device_id IS NULL ORDER BY id DESC LIMIT 1",
                         (event, gateway_id)).fetchone()
        return int(r[0]) if r else None
    return None
