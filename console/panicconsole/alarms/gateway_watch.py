"""Gateways: when each was last heard, its bridge trouble, and its silence. A dead gateway
cannot say it is dead, so silence is found by the clock (``check_gateways``) and ends the
moment the gateway speaks again."""

from __future__ import annotations

import sqlite3
from typing import Any

from panicconsole.alarms import audit, feed
from panicconsole.alarms.lines import find_open, open_line
from panicconsole.alarms.rules import SYSTEM


def touch_gateway(conn: sqlite3.Connection, gw: str, now: float,
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


def note_event(conn: sqlite3.Connection, event: str, gw: str, detail: str,
               now: float) -> bool:
    """What a document from ``gw`` says about the gateway itself (check-in, bridge trouble,
    supervision counts on its card); True when its card changed."""
    changed = True
    if event == "gateway_checkin":
        conn.execute("UPDATE gateways SET last_checkin = ? WHERE gateway_id = ?", (now, gw))
    elif event == "gateway_trouble":
        conn.execute("UPDATE gateways SET bridge_trouble = 1, trouble_since = ?, "
                     "trouble_detail = ? WHERE gateway_id = ?", (now, detail, gw))
    elif event == "gateway_trouble_restore":
        conn.execute("UPDATE gateways SET bridge_trouble = 0, trouble_since = NULL, "
                     "trouble_detail = '' WHERE gateway_id = ?", (gw,))
    elif event not in ("supervision_lost", "supervision_restore"):
        changed = False
    return heard_again(conn, gw, now) or changed


def heard_again(conn: sqlite3.Connection, gw: str, now: float) -> bool:
    """A silent gateway speaks again: its silence line is restored. True when it changed."""
    r = conn.execute("SELECT silent FROM gateways WHERE gateway_id = ?", (gw,)).fetchone()
    if not r or not r[0]:
        return False
    conn.execute("UPDATE gateways SET silent = 0 WHERE gateway_id = ?", (gw,))
    existing = find_open(conn, "gateway_silent", gateway_id=gw)
    if existing is not None:
        conn.execute("UPDATE alarms SET restored_at = ?, updated_at = ?, version = version + 1 "
                     "WHERE id = ?", (now, now, existing))
        feed.emit_alarm(conn, existing, now)
    return True


def check_gateways(conn: sqlite3.Connection, now: float, overdue_s: float) -> list[str]:
    """Gateways heard from before but silent for ``overdue_s``: a 'gateway_silent' line each.
    Returns their ids."""
    out = []
    for r in conn.execute("SELECT gateway_id, last_seen FROM gateways WHERE silent = 0 AND "
                          "last_seen <= ?", (now - overdue_s,)).fetchall():
        gw = r["gateway_id"]
        conn.execute("UPDATE gateways SET silent = 1 WHERE gateway_id = ?", (gw,))
        mins = int((now - r["last_seen"]) // 60)
        aid = find_open(conn, "gateway_silent", gateway_id=gw)
        if aid is None:
            aid = open_line(conn, now, incident_id=f"{gw}-silent-{int(now)}",
                            event="gateway_silent", category="trouble", gateway_id=gw,
                            body=None, skey=None, device_id=None,
                            detail=f"nothing heard for {mins} min")
        audit.record(conn, now, SYSTEM, "gateway_silent", aid,
                     f"{gw}: nothing heard for {mins} min")
        feed.emit_alarm(conn, aid, now)
        feed.emit_gateway(conn, gw, now)
        out.append(gw)
    return out
