"""Sites and devices as the console knows them: one row each, kept up to date by registry
imports and by every dispatch document that names them."""

from __future__ import annotations

import hashlib
import sqlite3
from typing import Any

from panicconsole.alarms.jsoncol import dumps


def site_key(site: dict[str, Any]) -> str:
    """A site's identity: its name and address (case and spacing ignored)."""
    norm = " ".join(str(site.get("name", "")).lower().split()) + "|" + " ".join(
        str(site.get("address", "")).lower().split())
    return hashlib.sha256(norm.encode()).hexdigest()[:16]


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
         dumps(registered_paths or []), now if heard_paths is not None else None,
         dumps(heard_paths or []), now))
