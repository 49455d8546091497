"""Action plans: numbered steps per site and event kind, copied onto a line when it opens.

A site's own plan wins over the precinct-wide plan for that event (site ``*``), which wins
over the built-in defaults below. Each step is ``{"en": ..., "id": ...}`` (English and
Bahasa Indonesia); a plan file may give one text for both.
"""

from __future__ import annotations

import json
import sqlite3
import tomllib
from pathlib import Path
from typing import Any

EVENTS = ("panic", "tamper", "supervision_lost", "low_battery", "gateway_trouble",
          "gateway_silent")
MAX_STEPS = 30
MAX_STEP_LEN = 500

Step = dict[str, str]


def _s(en: str, id_: str) -> Step:
    return {"en": en, "id": id_}


DEFAULTS: dict[str, list[Step]] = {
    "panic": [
        _s("Send the nearest police unit to the site's address now. Do NOT call the site "
           "first: a call can endanger the person who pressed.",
           "Kirim unit polisi terdekat ke alamat lokasi sekarang. JANGAN menelepon lokasi "
           "dulu: telepon bisa membahayakan orang yang menekan tombol."),
        _s("Brief the unit: silent hold-up alarm, site name, address, the button's label and "
           "how many presses.",
           "Beri tahu unit: alarm perampokan senyap, nama lokasi, alamat, label tombol dan "
           "jumlah tekanan."),
        _s("Watch this line for repeat presses or a cancel and pass every update to the unit.",
           "Pantau baris ini untuk tekanan ulang atau pembatalan dan teruskan setiap kabar ke "
           "unit."),
        _s("Only after the unit reports on site: call the site's contact.",
           "Baru setelah unit melapor tiba di lokasi: telepon kontak lokasi."),
        _s("Record what the unit found, then close with the disposition.",
           "Catat temuan unit, lalu tutup dengan kode disposisi."),
    ],
    "tamper": [
        _s("Call the site's contact: is the button being serviced or was its case opened?",
           "Telepon kontak lokasi: apakah tombol sedang diservis atau casingnya dibuka?"),
        _s("No answer or an unexpected answer: send a unit to check the site.",
           "Tidak dijawab atau jawabannya janggal: kirim unit untuk memeriksa lokasi."),
        _s("Record the outcome and close.", "Catat hasilnya dan tutup."),
    ],
    "supervision_lost": [
        _s("Call the site's contact: is the button there, and does it have power?",
           "Telepon kontak lokasi: apakah tombol masih ada dan menyala?"),
        _s("Cannot reach the site: ask a patrol nearby to check on it.",
           "Lokasi tidak bisa dihubungi: minta patroli terdekat memeriksa."),
        _s("Ask the installer for a service visit (the site has no working button).",
           "Minta teknisi pemasang datang servis (lokasi tidak punya tombol yang berfungsi)."),
    ],
    "low_battery": [
        _s("Tell the site's contact that the button's battery must be replaced soon.",
           "Beri tahu kontak lokasi bahwa baterai tombol harus segera diganti."),
        _s("Ask the installer to replace it; record the date agreed.",
           "Minta teknisi pemasang menggantinya; catat tanggal yang disepakati."),
    ],
    "gateway_trouble": [
        _s("Call the technician on duty: the gateway's radio bridge is missing; radio "
           "buttons in its area are not heard.",
           "Hubungi teknisi piket: radio bridge gateway hilang; tombol radio di wilayahnya "
           "tidak terdengar."),
        _s("Until it is fixed, ask patrols to pass the area's shops more often.",
           "Sampai diperbaiki, minta patroli lebih sering melintasi toko di wilayah itu."),
    ],
    "gateway_silent": [
        _s("Call the technician on duty: nothing heard from this gateway; alarms from its "
           "area may not reach the console.",
           "Hubungi teknisi piket: gateway ini tidak terdengar; alarm dari wilayahnya mungkin "
           "tidak sampai ke konsol."),
        _s("Until it is back, ask patrols to pass the area's shops more often.",
           "Sampai kembali normal, minta patroli lebih sering melintasi toko di wilayah itu."),
    ],
}


class PlanError(ValueError):
    """A bad plan file; the message names the plan and the field."""


def steps_for(conn: sqlite3.Connection, site_key: str | None, event: str) -> list[Step]:
    """The steps a new line gets: the site's plan, else the precinct's, else the default."""
    for key in ([site_key] if site_key else []) + ["*"]:
        r = conn.execute("SELECT steps FROM plans WHERE site_key = ? AND event = ?",
                         (key, event)).fetchone()
        if r:
            return json.loads(r[0])
    return [dict(s) for s in DEFAULTS.get(event, [])]


def _step(v: Any, where: str) -> Step:
    if isinstance(v, str):
        v = {"en": v, "id": v}
    if not isinstance(v, dict) or set(v) - {"en", "id"} or not v:
        raise PlanError(f"{where}: a step is a string or a table with 'en' and/or 'id'")
    out = {}
    for lang in ("en", "id"):
        text = v.get(lang, v.get("id" if lang == "en" else "en"))
        if not isinstance(text, str) or not text.strip():
            raise PlanError(f"{where}: step text must be a non-empty string")
        if len(text) > MAX_STEP_LEN:
            raise PlanError(f"{where}: step text longer than {MAX_STEP_LEN} characters")
        out[lang] = text.strip()
    return out


def validate_steps(steps: Any, where: str) -> list[Step]:
    if not isinstance(steps, list) or not steps:
        raise PlanError(f"{where}: 'steps' must be a non-empty list")
    if len(steps) > MAX_STEPS:
        raise PlanError(f"{where}: at most {MAX_STEPS} steps")
    return [_step(s, f"{where} step {i + 1}") for i, s in enumerate(steps)]


def resolve_site(conn: sqlite3.Connection, name: str, address: str | None = None) -> str:
    """The site_key of the site called ``name`` (and at ``address`` if given)."""
    rows = conn.execute("SELECT site_key, address FROM sites WHERE name = ? COLLATE NOCASE",
                        (name,)).fetchall()
    if address is not None:
        rows = [r for r in rows if r["address"].strip().lower() == address.strip().lower()]
    if not rows:
        raise PlanError(f"no site named {name!r}" + (f" at {address!r}" if address else "")
                        + " (import sites first: panicconsole sites import FILE)")
    if len(rows) > 1:
        raise PlanError(f"{len(rows)} sites are named {name!r}: add address = ... to say which ("
                        + "; ".join(r["address"] for r in rows) + ")")
    return str(rows[0]["site_key"])


def read_file(path: Path) -> list[dict[str, Any]]:
    """Parse a plans TOML file: ``[[plan]]`` tables with event, steps, optional site/address."""
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as e:
        raise PlanError(f"{path}: cannot read ({e.strerror})") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as e:
        raise PlanError(f"{path}: not valid TOML: {e}") from None
    unknown = set(doc) - {"plan"}
    if unknown:
        raise PlanError(f"{path}: unknown key {sorted(unknown)[0]!r} (plans are [[plan]] tables)")
    plans = doc.get("plan")
    if not isinstance(plans, list) or not plans:
        raise PlanError(f"{path}: no [[plan]] tables")
    out = []
    for i, p in enumerate(plans):
        where = f"{path}: plan #{i + 1}"
        if not isinstance(p, dict):
            raise PlanError(f"{where}: must be a table")
        extra = set(p) - {"event", "site", "address", "steps"}
        if extra:
            raise PlanError(f"{where}: unknown key {sorted(extra)[0]!r}")
        if p.get("event") not in EVENTS:
            raise PlanError(f"{where}: 'event' must be one of {', '.join(EVENTS)}")
        site = p.get("site")
        if site is not None and (not isinstance(site, str) or not site.strip()):
            raise PlanError(f"{where}: 'site' must be a site's name")
        addr = p.get("address")
        if addr is not None and not isinstance(addr, str):
            raise PlanError(f"{where}: 'address' must be a string")
        out.append({"event": p["event"], "site": site, "address": addr,
                    "steps": validate_steps(p.get("steps"), where)})
    return out


def save(conn: sqlite3.Connection, site_key: str, event: str, steps: list[Step], by: str,
         now: float) -> None:
    conn.execute("INSERT INTO plans (site_key, event, steps, updated_at, updated_by) "
                 "VALUES (?, ?, ?, ?, ?) ON CONFLICT(site_key, event) DO UPDATE SET "
                 "steps = excluded.steps, updated_at = excluded.updated_at, "
                 "updated_by = excluded.updated_by",
                 (site_key, event, json.dumps(steps, ensure_ascii=False), now, by))


def listing(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT p.site_key, p.event, p.steps, p.updated_at, p.updated_by, "
                        "s.name, s.address FROM plans p LEFT JOIN sites s ON "
                        "s.site_key = p.site_key ORDER BY p.site_key != '*', s.name, p.event"
                        ).fetchall()
    out = [{"site": "*" if r["site_key"] == "*" else r["name"], "address": r["address"],
            "site_key": r["site_key"], "event": r["event"], "steps": json.loads(r["steps"]),
            "updated_at": r["updated_at"], "updated_by": r["updated_by"], "source": "plan"}
           for r in rows]
    have = {(p["site_key"], p["event"]) for p in out}
    for ev, steps in DEFAULTS.items():
        if ("*", ev) not in have:
            out.append({"site": "*", "address": None, "site_key": "*", "event": ev,
                        "steps": steps, "updated_at": None, "updated_by": None,
                        "source": "built-in"})
    return out
