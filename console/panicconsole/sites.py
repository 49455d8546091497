"""Sites and devices the console knows before their first alarm.

Two sources: the gateway's registry export (``panic-button-registry/1``, written by
``panictool provision`` and read by ``panicgw devices import``) and dispatch bodies (the
reference receiver's ``--record`` JSON lines, ``GET /v1/received``, or plain bodies). A
registry export carries device keys: the console reads only the site and the device's
public fields, never stores a key and never prints one.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from panicconsole.alarms.directory import upsert_device, upsert_site
from panicconsole.contract import PATHS, SITE_KINDS

REGISTRY_FORMAT = "panic-button-registry/1"


class SitesError(ValueError):
    """Bad input; the message names the record and the field (never a key's value)."""


@dataclass
class Entry:
    site: dict[str, Any]
    device: dict[str, Any] | None
    paths: list[str]


def _site(obj: Any, where: str) -> dict[str, Any]:
    if not isinstance(obj, dict):
        raise SitesError(f"{where}: 'site' must be an object")
    name = obj.get("name")
    if not isinstance(name, str) or not name.strip() or len(name) > 500:
        raise SitesError(f"{where}: field 'site.name' must be a non-empty string")
    if obj.get("kind") not in SITE_KINDS:
        raise SitesError(f"{where}: field 'site.kind' must be one of {SITE_KINDS}")
    out = {"name": name.strip(), "kind": obj["kind"]}
    for f in ("address", "contact", "phone"):
        v = obj.get(f, "")
        if not isinstance(v, str) or len(v) > 500:
            raise SitesError(f"{where}: field 'site.{f}' must be a string")
        out[f] = v
    for f, lo, hi in (("lat", -90.0, 90.0), ("lon", -180.0, 180.0)):
        v = obj.get(f)
        if (not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)
                or not lo <= v <= hi):
            raise SitesError(f"{where}: field 'site.{f}' must be a number {lo}..{hi}")
        out[f] = float(v)
    return out


def _registry(doc: dict[str, Any], src: str) -> list[Entry]:
    devs = doc.get("devices")
    if not isinstance(devs, list):
        raise SitesError(f"{src}: 'devices' must be a list")
    out = []
    for i, d in enumerate(devs):
        if not isinstance(d, dict):
            raise SitesError(f"{src}: device #{i + 1} must be an object")
        did = d.get("device_id")
        if not isinstance(did, int) or isinstance(did, bool) or not 0 <= did <= 0xFFFFFFFF:
            raise SitesError(f"{src}: device #{i + 1}: field 'device_id' must be an integer")
        where = f"{src}: device {did:08X}"
        label = d.get("label", "")
        if not isinstance(label, str):
            raise SitesError(f"{where}: field 'label' must be a string")
        paths = d.get("paths", [])
        if not isinstance(paths, list) or any(p not in PATHS for p in paths):
            raise SitesError(f"{where}: field 'paths' must be a list of 'lora'/'wifi'")
        fw = d.get("firmware")
        out.append(Entry(_site(d.get("site"), where),
                         {"id": f"{did:08X}", "label": label,
                          "firmware": fw if isinstance(fw, str) else None}, list(paths)))
    return out


def _bodies(objs: list[Any], src: str) -> list[Entry]:
    out = []
    for i, o in enumerate(objs):
        body = o.get("body") if isinstance(o, dict) and "body" in o else o
        if not isinstance(body, dict) or not isinstance(body.get("site"), dict):
            continue  # gateway events and refused requests have no site
        where = f"{src}: record #{i + 1}"
        dev = body.get("device")
        device = None
        if isinstance(dev, dict) and isinstance(dev.get("id"), str):
            device = {k: dev.get(k) for k in ("id", "label", "battery_mv", "low_battery",
                                               "firmware")}
        out.append(Entry(_site(body["site"], where), device, []))
    return out


def read(path: Path) -> tuple[str, list[Entry]]:
    """(kind, entries) from a registry export or dispatch bodies (JSON, or JSON lines)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise SitesError(f"{path}: cannot read ({e.strerror})") from None
    except UnicodeDecodeError:
        raise SitesError(f"{path}: not UTF-8 text") from None
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    if isinstance(doc, dict) and doc.get("format") == REGISTRY_FORMAT:
        return "registry", _registry(doc, str(path))
    if isinstance(doc, dict) and "format" in doc:
        raise SitesError(f"{path}: unknown format {doc['format']!r} (expected "
                         f"{REGISTRY_FORMAT!r} or dispatch bodies)")
    if isinstance(doc, list):
        return "dispatch", _bodies(doc, str(path))
    if isinstance(doc, dict):
        return "dispatch", _bodies([doc], str(path))
    objs = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            objs.append(json.loads(line))
        except ValueError:
            raise SitesError(f"{path}: line {n} is not JSON (expected a registry export, "
                             "a JSON list of dispatch bodies, or JSON lines)") from None
    return "dispatch", _bodies(objs, str(path))


def store(conn: sqlite3.Connection, kind: str, entries: list[Entry],
          now: float) -> dict[str, int]:
    """Upsert sites and devices; returns counts of distinct sites and devices."""
    sites: set[str] = set()
    devices: set[str] = set()
    for e in entries:
        key = upsert_site(conn, e.site, kind, now)
        sites.add(key)
        if e.device:
            upsert_device(conn, e.device, key, now, registered_paths=e.paths)
            devices.add(e.device["id"])
    return {"sites": len(sites), "devices": len(devices)}
