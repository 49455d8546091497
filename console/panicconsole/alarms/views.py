"""What the screens get: a queue line, the open queue in its order, a gateway, the event
log. Read-only; the same dicts go out in ``/api/state`` and in the live feed."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms.jsoncol import loads
from panicconsole.alarms.rules import PRIO_RESTORED


def alarm_view(conn: sqlite3.Connection, alarm_id: int) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT a.*, u.username AS owner_name, u.display_name AS owner_display, "
        "c.username AS closed_by_name FROM alarms a LEFT JOIN users u ON u.id = a.owner_id "
        "LEFT JOIN users c ON c.id = a.closed_by WHERE a.id = ?", (alarm_id,)).fetchone()
    return _alarm_dict(row) if row else None


def _alarm_dict(r: sqlite3.Row) -> dict[str, Any]:
    prio = PRIO_RESTORED if r["restored_at"] is not None else r["priority"]
    return {
        "id": r["id"], "incident_id": r["incident_id"], "event": r["event"],
        "category": r["category"], "priority": prio, "state": r["state"],
        "site_key": r["site_key"], "device_id": r["device_id"], "gateway_id": r["gateway_id"],
        "contact_id": r["contact_id"], "site": loads(r["site"]), "device": loads(r["device"]),
        "paths": loads(r["paths"], []), "press_count": r["press_count"],
        "first_heard": r["first_heard"], "last_heard": r["last_heard"],
        "opened_at": r["opened_at"], "updated_at": r["updated_at"],
        "owner": ({"id": r["owner_id"], "username": r["owner_name"],
                   "name": r["owner_display"] or r["owner_name"]}
                  if r["owner_id"] is not None else None),
        "taken_at": r["taken_at"], "escalation": r["escalation"],
        "escalated_at": r["escalated_at"], "restored_at": r["restored_at"],
        "cancel_at": r["cancel_at"], "steps": loads(r["steps"], []),
        "disposition": r["disposition"], "note": r["note"], "closed_at": r["closed_at"],
        "closed_by": r["closed_by_name"], "detail": r["detail"], "version": r["version"],
    }


def open_alarms(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """The queue in its order: priority (a restored trouble drops to the last), then age."""
    rows = conn.execute(
        "SELECT a.*, u.username AS owner_name, u.display_name AS owner_display, "
        "NULL AS closed_by_name FROM alarms a LEFT JOIN users u ON u.id = a.owner_id "
        "WHERE a.state = 'open' ORDER BY CASE WHEN a.restored_at IS NULL THEN a.priority "
        f"ELSE {PRIO_RESTORED} END, a.opened_at").fetchall()
    return [_alarm_dict(r) for r in rows]


def gateway_view(conn: sqlite3.Connection, gateway_id: str) -> dict[str, Any] | None:
    r = conn.execute("SELECT * FROM gateways WHERE gateway_id = ?", (gateway_id,)).fetchone()
    if r is None:
        return None
    lost = conn.execute(
        "SELECT COUNT(*) FROM alarms WHERE state = 'open' AND event = 'supervision_lost' "
        "AND restored_at IS NULL AND gateway_id = ?", (gateway_id,)).fetchone()[0]
    lat, lon, located = r["lat"], r["lon"], "set"
    if lat is None or lon is None:
        located = "sites"
        if r["site_n"]:
            lat, lon = r["site_lat_sum"] / r["site_n"], r["site_lon_sum"] / r["site_n"]
        else:
            lat = lon = None
            located = "unknown"
    return {"gateway_id": r["gateway_id"], "name": r["name"], "lat": lat, "lon": lon,
            "located": located, "first_seen": r["first_seen"], "last_seen": r["last_seen"],
            "last_checkin": r["last_checkin"], "bridge_trouble": bool(r["bridge_trouble"]),
            "trouble_since": r["trouble_since"], "trouble_detail": r["trouble_detail"],
            "silent": bool(r["silent"]), "supervision_lost": lost}


def gateways(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    ids = [r[0] for r in conn.execute("SELECT gateway_id FROM gateways ORDER BY gateway_id")]
    return [g for g in (gateway_view(conn, i) for i in ids) if g is not None]


def log_view(r: sqlite3.Row) -> dict[str, Any]:
    body = loads(r["body"], {})
    site = body.get("site") or {}
    return {"id": r["id"], "at": r["received_at"], "event": r["event"], "test": bool(r["test"]),
            "incident_id": r["incident_id"], "gateway_id": r["gateway_id"],
            "device_id": r["device_id"], "site": site.get("name"),
            "contact_id": (body.get("contact_id") or {}).get("display"),
            "press_count": body.get("press_count"), "alarm_id": r["alarm_id"],
            "detail": body.get("detail", "")}


def recent_log(conn: sqlite3.Connection, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM messages ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
    return [log_view(r) for r in rows]
