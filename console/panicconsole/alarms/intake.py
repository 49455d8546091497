"""A dispatch document accepted by the endpoint: stored once (its Idempotency-Key), and what
it does to the queue. An alarm opens a line or updates the open line of the same incident
(troubles: of the same device or gateway); a restore marks the trouble it ends; a cancel
marks the panic it follows; tests and check-ins are only logged."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Any

from panicconsole.alarms import feed, gateway_watch
from panicconsole.alarms.directory import upsert_device, upsert_site
from panicconsole.alarms.jsoncol import dumps
from panicconsole.alarms.lines import find_open, open_line, update_line
from panicconsole.alarms.rules import MERGE_BY_SOURCE, PRIORITY, RESTORES
from panicconsole.alarms.views import log_view


@dataclass
class Applied:
    verdict: str  # "accepted" | "duplicate"
    alarm_id: int | None = None
    message_id: int | None = None


def apply_event(conn: sqlite3.Connection, body: dict[str, Any], key: str, now: float,
                raw_body: str | None = None) -> Applied:
    """Store one valid document (its Idempotency-Key once) and update the queue."""
    if conn.execute("SELECT 1 FROM messages WHERE idempotency_key = ?", (key,)).fetchone():
        return Applied("duplicate")
    event, gw = body["event"], body["gateway_id"]
    site, dev = body.get("site"), body.get("device")
    skey = upsert_site(conn, site, "dispatch", now) if site else None
    device_id = dev["id"] if dev else None
    if dev:
        upsert_device(conn, dev, skey, now, heard_paths=body.get("paths") or [])
    gateway_changed = gateway_watch.touch_gateway(conn, gw, now, site)
    test = bool(body.get("test")) or event == "test"
    alarm_id: int | None = None

    if not test and event in PRIORITY:
        existing = find_open(conn, event, incident_id=body["incident_id"])
        if existing is None and event in MERGE_BY_SOURCE:
            existing = (find_open(conn, event, device_id=device_id) if device_id
                        else find_open(conn, event, gateway_id=gw))
        if existing is not None:
            update_line(conn, existing, body, now)
            alarm_id = existing
        else:
            alarm_id = open_line(conn, now, incident_id=body["incident_id"], event=event,
                                 category=body["category"], gateway_id=gw, body=body,
                                 skey=skey, device_id=device_id)
        feed.emit_alarm(conn, alarm_id, now)
    elif event in RESTORES:
        target = RESTORES[event]
        existing = (find_open(conn, target, device_id=device_id) if device_id
                    else find_open(conn, target, gateway_id=gw))
        if existing is not None:
            conn.execute("UPDATE alarms SET restored_at = ?, updated_at = ?, "
                         "version = version + 1 WHERE id = ?", (now, now, existing))
            feed.emit_alarm(conn, existing, now)
            alarm_id = existing
    elif event == "cancel" and device_id:
        existing = find_open(conn, "panic", device_id=device_id)
        if existing is not None:
            conn.execute("UPDATE alarms SET cancel_at = ?, updated_at = ?, version = version + 1 "
                         "WHERE id = ?", (now, now, existing))
            feed.emit_alarm(conn, existing, now)
            alarm_id = existing

    if gateway_watch.note_event(conn, event, gw, body.get("detail", ""), now):
        gateway_changed = True
    cur = conn.execute(
        "INSERT INTO messages (idempotency_key, received_at, incident_id, event, test, "
        "gateway_id, site_key, device_id, alarm_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, now, body["incident_id"], event, int(test), gw, skey, device_id, alarm_id,
         raw_body if raw_body is not None else dumps(body)))
    msg_id = int(cur.lastrowid or 0)
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (msg_id,)).fetchone()
    feed.change(conn, now, "log", log_view(row))
    if gateway_changed:
        feed.emit_gateway(conn, gw, now)
    return Applied("accepted", alarm_id, msg_id)


def record_receipt(conn: sqlite3.Connection, now: float, status: int, verdict: str,
                   key: str | None, gateway: str | None, attempt: str | None, remote: str,
                   errors: list[str], body: str | None) -> None:
    """Every answer the endpoint gave, accepted or refused (``panicconsole audit
    dispatch-log`` and the admin page read them)."""
    conn.execute("INSERT INTO receipts (at, status, verdict, idempotency_key, gateway, attempt, "
                 "remote, errors, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (now, status, verdict, key, gateway, attempt, remote, dumps(errors), body))


def receipts(conn: sqlite3.Connection) -> list[sqlite3.Row]:
    """Every receipt with the body it answered, oldest first (the demo's evidence of what
    dispatch received)."""
    return conn.execute("SELECT at, status, verdict, body, errors FROM receipts "
                        "ORDER BY id").fetchall()
