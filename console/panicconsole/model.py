"""The queue's rules: what an accepted dispatch document does to the operators' screens, and
what operators can do to a line. Every function runs inside the writer's transaction
(``conn``) and records what changed in ``changes`` (the live feed) and ``audit``.

Queue order: priority (1 panic/hold-up, 2 tamper, 3 trouble: supervision lost, low battery,
gateway trouble or silence, 4 trouble already restored), then age, oldest first. Installer
tests, check-ins, cancels and restores never open a line: they are logged (the event log
and the site's history); a restore marks the trouble line it ends, a cancel marks the
panic it follows.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import sqlite3
import time
from dataclasses import dataclass
from typing import Any

from panicconsole import plans as plans_mod

PRIORITY = {"panic": 1, "tamper": 2, "supervision_lost": 3, "low_battery": 3,
            "gateway_trouble": 3, "gateway_silent": 3}
PRIO_RESTORED = 4
RESTORES = {"supervision_restore": "supervision_lost", "low_battery_restore": "low_battery",
            "gateway_trouble_restore": "gateway_trouble"}
# Troubles of one device (or gateway) update one line while it is open, like repeat presses.
MERGE_BY_SOURCE = ("supervision_lost", "low_battery", "gateway_trouble", "gateway_silent")
DISPOSITIONS = ("real", "false", "test", "cancelled", "technical", "duplicate")
ROLES = ("operator", "supervisor", "admin")
MAX_NOTE = 2000
SYSTEM = {"id": None, "username": "system", "role": "system"}


class ActionError(Exception):
    """An operator's action that the rules refuse; ``status`` is the HTTP answer, ``code`` a
    message-catalogue key, ``detail`` the facts (e.g. the owner's name)."""

    def __init__(self, status: int, code: str, **detail: Any) -> None:
        super().__init__(code)
        self.status = status
        self.code = code
        self.detail = detail


def site_key(site: dict[str, Any]) -> str:
    """A site's identity: its name and address (case and spacing ignored)."""
    norm = " ".join(str(site.get("name", "")).lower().split()) + "|" + " ".join(
        str(site.get("address", "")).lower().split())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


def _j(v: Any) -> str:
    return json.dumps(v, separators=(",", ":"), ensure_ascii=False)


def _load(v: str | None, default: Any = None) -> Any:
    if v is None:
        return default
    try:
        return json.loads(v)
    except ValueError:
        return default


# -- views (what the screens get) -------------------------------------------------------------


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
        "contact_id": r["contact_id"], "site": _load(r["site"]), "device": _load(r["device"]),
        "paths": _load(r["paths"], []), "press_count": r["press_count"],
        "first_heard": r["first_heard"], "last_heard": r["last_heard"],
        "opened_at": r["opened_at"], "updated_at": r["updated_at"],
        "owner": ({"id": r["owner_id"], "username": r["owner_name"],
                   "name": r["owner_display"] or r["owner_name"]}
                  if r["owner_id"] is not None else None),
        "taken_at": r["taken_at"], "escalation": r["escalation"],
        "escalated_at": r["escalated_at"], "restored_at": r["restored_at"],
        "cancel_at": r["cancel_at"], "steps": _load(r["steps"], []),
        "disposition": r["disposition"], "note": r["note"], "closed_at": r["closed_at"],
        "closed_by": r["closed_by_name"], "detail": r["detail"], "version": r["version"],
    }


def open_alarms(conn: sqlite3.Connection) -> list[dict[str, Any]]:
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
    body = _load(r["body"], {})
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


def _change(conn: sqlite3.Connection, now: float, kind: str, data: dict[str, Any]) -> None:
    conn.execute("INSERT INTO changes (at, kind, data) VALUES (?, ?, ?)", (now, kind, _j(data)))


def _emit_alarm(conn: sqlite3.Connection, alarm_id: int, now: float) -> dict[str, Any]:
    view = alarm_view(conn, alarm_id)
    assert view is not None
    _change(conn, now, "alarm", view)
    return view


def _emit_gateway(conn: sqlite3.Connection, gateway_id: str, now: float) -> None:
    view = gateway_view(conn, gateway_id)
    if view is not None:
        _change(conn, now, "gateway", view)


def audit(conn: sqlite3.Connection, now: float, user: dict[str, Any], action: str,
          alarm_id: int | None = None, detail: str = "", remote: str = "") -> None:
    conn.execute("INSERT INTO audit (at, username, role, action, alarm_id, detail, remote) "
                 "VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (now, user["username"], user["role"], action, alarm_id, detail[:4000], remote))


# -- the dispatch side ---------------------------------------------------------------------


@dataclass
class Applied:
    verdict: str  # "accepted" | "duplicate"
    alarm_id: int | None = None
    message_id: int | None = None


def upsert_site(conn: sqlite3.Connection, site: dict[str, Any], source: str,
                now: float) -> str:
    key = site_key(site)
    conn.execute(
        "INSERT INTO sites (site_key, name, kind, address, lat, lon, contact, phone, source, "
        "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(site_key) DO UPDATE SET "
        "name = excluded.name, kind = excluded.kind, address = excluded.address, "
        "lat = excluded.lat, lon = excluded.lon, contact = excluded.contact, "
        "phone = excluded.phone, source = excluded.source, updated_at = excluded.updated_at",
        (key, site["name"], site.get("kind", "shop"), site.get("address", ""), site.get("lat"),
         site.get("lon"), site.get("contact", ""), site.get("phone", ""), source, now))
    return key


def upsert_device(conn: sqlite3.Connection, dev: dict[str, Any], skey: str | None, now: float,
                  *, heard_paths: list[dict[str, Any]] | None = None,
                  registered_paths: list[str] | None = None) -> None:
    conn.execute(
        "INSERT INTO devices (device_id, site_key, label, firmware, battery_mv, low_battery, "
        "paths, last_heard, last_paths, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
        "ON CONFLICT(device_id) DO UPDATE SET site_key = excluded.site_key, "
        "label = excluded.label, firmware = COALESCE(excluded.firmware, devices.firmware), "
        "battery_mv = COALESCE(excluded.battery_mv, devices.battery_mv), "
        "low_battery = COALESCE(excluded.low_battery, devices.low_battery), "
        "paths = CASE WHEN excluded.paths = '[]' THEN devices.paths ELSE excluded.paths END, "
        "last_heard = COALESCE(excluded.last_heard, devices.last_heard), "
        "last_paths = CASE WHEN excluded.last_paths = '[]' THEN devices.last_paths "
        "ELSE excluded.last_paths END, updated_at = excluded.updated_at",
        (dev["id"], skey, dev.get("label", ""), dev.get("firmware"), dev.get("battery_mv"),
         None if dev.get("low_battery") is None else int(bool(dev.get("low_battery"))),
         _j(registered_paths or []), now if heard_paths is not None else None,
         _j(heard_paths or []), now))


def _touch_gateway(conn: sqlite3.Connection, gw: str, now: float,
                   site: dict[str, Any] | None) -> bool:
    """Note that ``gw`` was heard; True when it is a gateway never heard before."""
    new = conn.execute("SELECT 1 FROM gateways WHERE gateway_id = ?", (gw,)).fetchone() is None
    conn.execute("INSERT INTO gateways (gateway_id, first_seen, last_seen) VALUES (?, ?, ?) "
                 "ON CONFLICT(gateway_id) DO UPDATE SET last_seen = excluded.last_seen",
                 (gw, now, now))
    if site and isinstance(site.get("lat"), int | float) and isinstance(site.get("lon"),
                                                                        int | float):
        conn.execute("UPDATE gateways SET site_lat_sum = site_lat_sum + ?, "
                     "site_lon_sum = site_lon_sum + ?, site_n = site_n + 1 "
                     "WHERE gateway_id = ? AND site_n < 1000",
                     (float(site["lat"]), float(site["lon"]), gw))
    return new


def _open_line(conn: sqlite3.Connection, now: float, *, incident_id: str, event: str,
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
         _j(site) if site else None,
         _j((body or {}).get("device")) if (body or {}).get("device") else None,
         _j((body or {}).get("paths") or []), int((body or {}).get("press_count") or 1),
         times.get("first_heard"), times.get("last_heard"), now, now,
         _j([{"text": s, "done": False, "by": None, "at": None} for s in steps]),
         detail or (body or {}).get("detail", "")))
    assert cur.lastrowid is not None
    return int(cur.lastrowid)


def _update_line(conn: sqlite3.Connection, alarm_id: int, body: dict[str, Any],
                 now: float) -> None:
    times = body.get("times") or {}
    conn.execute(
        "UPDATE alarms SET press_count = MAX(press_count, ?), "
        "last_heard = CASE WHEN ? > COALESCE(last_heard, '') THEN ? ELSE last_heard END, "
        "paths = ?, device = COALESCE(?, device), site = COALESCE(?, site), "
        "restored_at = NULL, updated_at = ?, version = version + 1 WHERE id = ?",
        (int(body.get("press_count") or 1), times.get("last_heard") or "",
         times.get("last_heard"), _j(body.get("paths") or []),
         _j(body["device"]) if body.get("device") else None,
         _j(body["site"]) if body.get("site") else None, now, alarm_id))


def _find_open(conn: sqlite3.Connection, event: str, *, incident_id: str | None = None,
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
    gateway_changed = _touch_gateway(conn, gw, now, site)
    test = bool(body.get("test")) or event == "test"
    alarm_id: int | None = None

    if not test and event in PRIORITY:
        existing = _find_open(conn, event, incident_id=body["incident_id"])
        if existing is None and event in MERGE_BY_SOURCE:
            existing = (_find_open(conn, event, device_id=device_id) if device_id
                        else _find_open(conn, event, gateway_id=gw))
        if existing is not None:
            _update_line(conn, existing, body, now)
            alarm_id = existing
        else:
            alarm_id = _open_line(conn, now, incident_id=body["incident_id"], event=event,
                                  category=body["category"], gateway_id=gw, body=body,
                                  skey=skey, device_id=device_id)
        _emit_alarm(conn, alarm_id, now)
    elif event in RESTORES:
        target = RESTORES[event]
        existing = (_find_open(conn, target, device_id=device_id) if device_id
                    else _find_open(conn, target, gateway_id=gw))
        if existing is not None:
            conn.execute("UPDATE alarms SET restored_at = ?, updated_at = ?, "
                         "version = version + 1 WHERE id = ?", (now, now, existing))
            _emit_alarm(conn, existing, now)
            alarm_id = existing
    elif event == "cancel" and device_id:
        existing = _find_open(conn, "panic", device_id=device_id)
        if existing is not None:
            conn.execute("UPDATE alarms SET cancel_at = ?, updated_at = ?, version = version + 1 "
                         "WHERE id = ?", (now, now, existing))
            _emit_alarm(conn, existing, now)
            alarm_id = existing

    if event == "gateway_checkin":
        conn.execute("UPDATE gateways SET last_checkin = ? WHERE gateway_id = ?", (now, gw))
        gateway_changed = True
    elif event == "gateway_trouble":
        conn.execute("UPDATE gateways SET bridge_trouble = 1, trouble_since = ?, "
                     "trouble_detail = ? WHERE gateway_id = ?", (now, body.get("detail", ""), gw))
        gateway_changed = True
    elif event == "gateway_trouble_restore":
        conn.execute("UPDATE gateways SET bridge_trouble = 0, trouble_since = NULL, "
                     "trouble_detail = '' WHERE gateway_id = ?", (gw,))
        gateway_changed = True
    elif event == "supervision_lost" or event == "supervision_restore":
        gateway_changed = True
    if _gateway_heard(conn, gw, now):
        gateway_changed = True
    cur = conn.execute(
        "INSERT INTO messages (idempotency_key, received_at, incident_id, event, test, "
        "gateway_id, site_key, device_id, alarm_id, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (key, now, body["incident_id"], event, int(test), gw, skey, device_id, alarm_id,
         raw_body if raw_body is not None else _j(body)))
    msg_id = int(cur.lastrowid or 0)
    row = conn.execute("SELECT * FROM messages WHERE id = ?", (msg_id,)).fetchone()
    _change(conn, now, "log", log_view(row))
    if gateway_changed:
        _emit_gateway(conn, gw, now)
    return Applied("accepted", alarm_id, msg_id)


def _gateway_heard(conn: sqlite3.Connection, gw: str, now: float) -> bool:
    """A silent gateway speaks again: its silence line is restored. True when it changed."""
    r = conn.execute("SELECT silent FROM gateways WHERE gateway_id = ?", (gw,)).fetchone()
    if not r or not r[0]:
        return False
    conn.execute("UPDATE gateways SET silent = 0 WHERE gateway_id = ?", (gw,))
    existing = _find_open(conn, "gateway_silent", gateway_id=gw)
    if existing is not None:
        conn.execute("UPDATE alarms SET restored_at = ?, updated_at = ?, version = version + 1 "
                     "WHERE id = ?", (now, now, existing))
        _emit_alarm(conn, existing, now)
    return True


def record_receipt(conn: sqlite3.Connection, now: float, status: int, verdict: str,
                   key: str | None, gateway: str | None, attempt: str | None, remote: str,
                   errors: list[str], body: str | None) -> None:
    conn.execute("INSERT INTO receipts (at, status, verdict, idempotency_key, gateway, attempt, "
                 "remote, errors, body) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                 (now, status, verdict, key, gateway, attempt, remote, _j(errors), body))


# -- timers: escalation and silent gateways --------------------------------------------------


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
        audit(conn, now, SYSTEM, "escalate", r[0], f"not taken within {int(take_within_s)} s")
        _emit_alarm(conn, r[0], now)
        out.append(r[0])
    for r in conn.execute(
            "SELECT id FROM alarms WHERE state = 'open' AND owner_id IS NOT NULL AND "
            "COALESCE(escalation, '') != 'overdue' AND taken_at <= ?",
            (now - close_within_s,)).fetchall():
        conn.execute("UPDATE alarms SET escalation = 'overdue', escalated_at = ?, "
                     "version = version + 1 WHERE id = ?", (now, r[0]))
        audit(conn, now, SYSTEM, "escalate", r[0],
              f"taken but not closed within {int(close_within_s // 60)} min")
        _emit_alarm(conn, r[0], now)
        out.append(r[0])
    return out


def check_gateways(conn: sqlite3.Connection, now: float, overdue_s: float) -> list[str]:
    """Gateways heard from before but silent for ``overdue_s``: a 'gateway_silent' line each
    (a dead gateway cannot say it is dead). Returns their ids."""
    out = []
    for r in conn.execute("SELECT gateway_id, last_seen FROM gateways WHERE silent = 0 AND "
                          "last_seen <= ?", (now - overdue_s,)).fetchall():
        gw = r["gateway_id"]
        conn.execute("UPDATE gateways SET silent = 1 WHERE gateway_id = ?", (gw,))
        mins = int((now - r["last_seen"]) // 60)
        aid = _find_open(conn, "gateway_silent", gateway_id=gw)
        if aid is None:
            aid = _open_line(conn, now, incident_id=f"{gw}-silent-{int(now)}",
                             event="gateway_silent", category="trouble", gateway_id=gw,
                             body=None, skey=None, device_id=None,
                             detail=f"nothing heard for {mins} min")
        audit(conn, now, SYSTEM, "gateway_silent", aid, f"{gw}: nothing heard for {mins} min")
        _emit_alarm(conn, aid, now)
        _emit_gateway(conn, gw, now)
        out.append(gw)
    return out


def prune(conn: sqlite3.Connection, now: float, keep_days: int,
          session_idle_s: float = 86400.0) -> dict[str, int]:
    """Forget receipts and messages older than ``keep_days`` (>= 7: the contract's
    idempotency horizon), live-feed rows older than 2 days and expired sessions."""
    conn.execute("DELETE FROM sessions WHERE last_seen < ?", (now - session_idle_s,))
    cut = now - keep_days * 86400
    n_r = conn.execute("DELETE FROM receipts WHERE at < ?", (cut,)).rowcount
    n_m = conn.execute("DELETE FROM messages WHERE received_at < ?", (cut,)).rowcount
    n_c = conn.execute("DELETE FROM changes WHERE at < ? AND seq < (SELECT MAX(seq) FROM "
                       "changes)", (now - 2 * 86400,)).rowcount
    return {"receipts": n_r, "messages": n_m, "changes": n_c}


# -- operators' actions ------------------------------------------------------------------------


def _alarm_row(conn: sqlite3.Connection, alarm_id: int) -> sqlite3.Row:
    r = conn.execute("SELECT a.*, u.username AS owner_name FROM alarms a LEFT JOIN users u "
                     "ON u.id = a.owner_id WHERE a.id = ?", (alarm_id,)).fetchone()
    if r is None:
        raise ActionError(404, "err_no_such_alarm")
    return r


def _must_own(r: sqlite3.Row, user: dict[str, Any]) -> None:
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
    r = _alarm_row(conn, alarm_id)
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
    audit(conn, now, user, "take", alarm_id, remote=remote)
    return _emit_alarm(conn, alarm_id, now)


def take_over(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], now: float,
              reason: str, remote: str = "") -> dict[str, Any]:
    """Take a line another operator owns: explicit, with the previous owner recorded."""
    r = _alarm_row(conn, alarm_id)
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
    audit(conn, now, user, "take_over", alarm_id,
          f"from {r['owner_name']}" + (f": {reason}" if reason else ""), remote)
    return _emit_alarm(conn, alarm_id, now)


def tick(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], index: int, done: bool,
         now: float, remote: str = "") -> dict[str, Any]:
    r = _alarm_row(conn, alarm_id)
    _must_own(r, user)
    steps = _load(r["steps"], [])
    if not 0 <= index < len(steps):
        raise ActionError(400, "err_no_such_step")
    steps[index].update({"done": bool(done), "by": user["username"] if done else None,
                         "at": now if done else None})
    conn.execute("UPDATE alarms SET steps = ?, updated_at = ?, version = version + 1 "
                 "WHERE id = ?", (_j(steps), now, alarm_id))
    text = steps[index]["text"]
    label = text.get("en") if isinstance(text, dict) else str(text)
    audit(conn, now, user, "step" if done else "step_unticked", alarm_id,
          f"{index + 1}. {label}", remote)
    return _emit_alarm(conn, alarm_id, now)


def note(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], text: str, now: float,
         remote: str = "") -> dict[str, Any]:
    r = _alarm_row(conn, alarm_id)
    _must_own(r, user)
    text = text.strip()
    if not text:
        raise ActionError(400, "err_note_empty")
    audit(conn, now, user, "note", alarm_id, text[:MAX_NOTE], remote)
    conn.execute("UPDATE alarms SET updated_at = ?, version = version + 1 WHERE id = ?",
                 (now, alarm_id))
    return _emit_alarm(conn, alarm_id, now)


def close(conn: sqlite3.Connection, alarm_id: int, user: dict[str, Any], disposition: str,
          text: str, now: float, remote: str = "") -> dict[str, Any]:
    """Close with a disposition code and a note (both required)."""
    r = _alarm_row(conn, alarm_id)
    _must_own(r, user)
    if disposition not in DISPOSITIONS:
        raise ActionError(400, "err_disposition")
    text = text.strip()
    if not text:
        raise ActionError(400, "err_note_empty")
    steps = _load(r["steps"], [])
    open_steps = [i + 1 for i, s in enumerate(steps) if not s.get("done")]
    conn.execute("UPDATE alarms SET state = 'closed', disposition = ?, note = ?, closed_at = ?, "
                 "closed_by = ?, updated_at = ?, version = version + 1 WHERE id = ?",
                 (disposition, text[:MAX_NOTE], now, user["id"], now, alarm_id))
    audit(conn, now, user, "close", alarm_id,
          f"{disposition}: {text[:MAX_NOTE]}"
          + (f" (steps not ticked: {', '.join(map(str, open_steps))})" if open_steps else ""),
          remote)
    return _emit_alarm(conn, alarm_id, now)


# -- the site card's history -------------------------------------------------------------------


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


def alarm_audit(conn: sqlite3.Connection, alarm_id: int) -> list[dict[str, Any]]:
    return [dict(r) for r in conn.execute(
        "SELECT seq, at, username, role, action, detail FROM audit WHERE alarm_id = ? "
        "ORDER BY seq", (alarm_id,))]


def audit_csv(rows: list[sqlite3.Row]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["seq", "time_utc", "user", "role", "action", "alarm_id", "detail", "remote"])
    for r in rows:
        w.writerow([r["seq"], time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(r["at"])),
                    r["username"], r["role"], r["action"],
                    "" if r["alarm_id"] is None else r["alarm_id"], r["detail"], r["remote"]])
    return buf.getvalue()
