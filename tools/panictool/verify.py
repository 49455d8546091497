"""The checks behind `panictool verify`, independent of where the console lines come from.

A button's console (real serial port or a simulated board) yields lines. "Did the gateway
hear the TEST" is answered by a ``HeardSource``: the running gateway's status API
(``GET /v1/frames``: the frames it judged, rejections included, for a user who may not read
the 0600 DB), or the gateway DB's ``events`` and ``receptions`` tables (read-only, beside the
running daemon), which the daemon commits before it ACKs.
"""

from __future__ import annotations

import json
import re
import sqlite3
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from panicbutton import report

PASS, WARN, FAIL = "PASS", "WARN", "FAIL"
# SX127x demodulation floor (datasheet, BW 125 kHz): SNR a packet still decodes at.
SNR_FLOOR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
MARGIN_GOOD_DB = 8.0  # fading and a closed shutter eat this much; below it, warn
MARGIN_MIN_DB = 3.0
PRESS_RE = re.compile(r"PANIC-BUTTON press: test counter=(\d+)", re.I)
ACK_RE = re.compile(r"PANIC-BUTTON ack: test counter=(\d+) status=(\d+) via (\w+)", re.I)

LineSource = Callable[[float], str | None]  # next console line within timeout, or None


@dataclass
class Check:
    name: str
    status: str
    detail: str
    hint: str = ""


@dataclass
class Result:
    checks: list[Check] = field(default_factory=list)
    report: dict[str, Any] | None = None
    heard: list[dict[str, Any]] = field(default_factory=list)
    test: dict[str, Any] | None = None  # counter, trigger ("usb" or "press"), nonce, ack

    def add(self, name: str, status: str, detail: str, hint: str = "") -> Check:
        c = Check(name, status, detail, hint)
        self.checks.append(c)
        return c

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks],
                "boot_report": self.report, "test": self.test, "heard": self.heard}


def link_margin(snr: float | None, sf: int) -> float | None:
    """dB above the demodulation floor for ``sf`` (None when the path has no SNR)."""
    if snr is None or sf not in SNR_FLOOR_DB:
        return None
    return round(snr - SNR_FLOOR_DB[sf], 1)


def read_boot_report(next_line: LineSource, timeout: float) -> dict[str, Any] | None:
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        line = next_line(left)
        if line is None:
            continue
        rep = report.parse(line)
        if rep is not None:
            return rep
    return None


def check_report(res: Result, rep: dict[str, Any] | None, rec: Any,
                 board_fp: str | None, fp_of: Callable[[bytes], str]) -> None:
    """Boot report, firmware version and key fingerprint against the registry record."""
    if rep is None:
        res.add("boot report", FAIL, "no PANIC-BUTTON line on the console",
                "is the button firmware flashed (`panictool flash`)? press reset and retry")
        return
    res.report = rep
    if "error" in rep:
        e = rep["error"]
        res.add("boot report", FAIL, f"firmware reports error {e.get('code')} "
                f"{e.get('name')}: {e.get('message')}",
                "fix settings.toml or re-run `panictool provision`")
    else:
        res.add("boot report", PASS, f"firmware {rep.get('firmware')} on {rep.get('board')}, "
                f"paths {', '.join(rep.get('paths') or []) or 'none'}")
    if rec is None:
        return
    if (board_id := rep.get("device_id")) != rec.device_id:
        said = f"0x{board_id:08X}" if isinstance(board_id, int) else str(board_id)
        res.add("device id", FAIL, f"board says {said}, registry "  # both in hex: comparable
                f"0x{rec.device_id:08X}", "provision the board again")
    if rec.firmware and rep.get("firmware") != rec.firmware:
        res.add("firmware version", WARN, f"board runs {rep.get('firmware')}, registry says "
                f"{rec.firmware}", "flash the current firmware (`panictool flash`)")
    else:
        res.add("firmware version", PASS, str(rep.get("firmware")))
    want = fp_of(rec.key)
    if board_fp is None:
        res.add("key fingerprint", WARN, "not read from the board (no serial access)")
    elif board_fp != want:
        res.add("key fingerprint", FAIL, f"board {board_fp} != registry {want}",
                "the gateway will reject this button: provision it again with --force")
    else:
        res.add("key fingerprint", PASS, board_fp)
    for part in ("radio", "wifi"):
        v = str(rep.get(part, "absent"))
        if v.startswith("fail"):
            res.add(part, FAIL if not rep.get("paths") else WARN, v,
                    "check the antenna/wiring" if part == "radio" else
                    "check PB_WIFI_SSID/PB_WIFI_PASSWORD and the shop's Wi-Fi")


def wait_for_press(next_line: LineSource, timeout: float) -> tuple[int | None, list[str]]:
    """Counter of the TEST the button queued, and the console lines seen meanwhile."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        line = next_line(left)
        if line is None:
            continue
        seen.append(line)
        m = PRESS_RE.search(line)
        if m:
            return int(m.group(1)), seen
    return None, seen


def heard(db: Path, device_id: int, counter: int) -> tuple[str, list[dict[str, Any]]] | None:
    """(event kind, receptions) of the frame (device, counter) in the gateway DB, or None."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5.0)
    try:
        row = con.execute("SELECT id, kind FROM events WHERE device_id = ? AND counter = ?",
                          (device_id, counter)).fetchone()
        if row is None:
            return None
        recs = con.execute("SELECT path, rssi, snr, at, duplicate FROM receptions "
                           "WHERE event_id = ? ORDER BY id", (row[0],)).fetchall()
    finally:
        con.close()
    return str(row[1]), [{"path": r[0], "rssi": r[1], "snr": r[2], "at": r[3],
                          "duplicate": bool(r[4])} for r in recs]


HeardSource = Callable[[int, int], "tuple[str, list[dict[str, Any]]] | None"]


def db_source(db: Path) -> HeardSource:
    """What the gateway stored, read from its DB (needs read access to the 0600 file)."""
    return lambda device_id, counter: heard(db, device_id, counter)


def api_source(url: str) -> HeardSource:
    """What the running gateway judged, from its status API (``GET /v1/frames``): works
    for a user who may not read the DB. A TEST the gateway rejected comes back as the kind
    ``rejected:<reason>`` with no receptions."""
    base = url.rstrip("/")

    def get(device_id: int, counter: int) -> tuple[str, list[dict[str, Any]]] | None:
        q = f"{base}/v1/frames?device={device_id:08X}&limit=500"
        with urllib.request.urlopen(q, timeout=5) as r:
            frames = [f for f in json.load(r)["frames"] if f.get("counter") == counter]
        kept = [f for f in frames if f.get("verdict") in ("stored", "duplicate")]
        if not kept:
            return (f"rejected:{frames[-1].get('reason')}", []) if frames else None
        kind = next((f["kind"] for f in kept if f["verdict"] == "stored"), kept[0]["kind"])
        return str(kind), [{"path": f["path"], "rssi": f["rssi"], "snr": f["snr"],
                            "at": f["at"], "duplicate": f["verdict"] == "duplicate"}
                           for f in kept]

    return get


def _ack(line: str | None, counter: int) -> dict[str, Any] | None:
    m = ACK_RE.search(line or "")
    if m is None or int(m.group(1)) != counter:
        return None
    return {"status": int(m.group(2)), "path": m.group(3)}


def check_heard(res: Result, source: HeardSource, where: str, device_id: int, counter: int,
                paths: list[str], sf: int, timeout: float,
                next_line: LineSource | None = None, ack_wait: float = 10.0) -> None:
    """Wait until the gateway stored the TEST (and each of the button's paths delivered a
    copy, or ``timeout`` passed), then grade each path's link margin. With the console
    (``next_line``) also wait up to ``ack_wait`` s for the button's ACK line: the gateway
    commits before it answers, so the ACK comes last."""
    end = time.monotonic() + timeout
    found = None
    ack: dict[str, Any] | None = None
    while time.monotonic() < end:
        try:
            found = source(device_id, counter)
        except (sqlite3.Error, OSError, ValueError, KeyError) as e:
            res.add("gateway heard TEST", FAIL, f"cannot read {where}: {e}",
                    "pass the gateway's status API (--gateway http://127.0.0.1:8765 on the "
                    "gateway) or its DB (--gateway-db data_dir/gateway.db)")
            return
        if found and found[0].startswith("rejected:"):
            reason = found[0].split(":", 1)[1]
            res.add("gateway heard TEST", FAIL, f"the gateway heard frame "
                    f"0x{device_id:08X}/{counter} but rejected it: {reason}",
                    "bad_tag or unknown_device: the gateway has another key or no record "
                    "for this button; import the provision export again (`panicgw devices "
                    "import`) or re-provision")
            return
        if found and {r["path"] for r in found[1]} >= set(paths):
            break
        if next_line is not None:
            ack = ack or _ack(next_line(0.2), counter)
        else:
            time.sleep(0.2)
    if found is None:
        res.add("gateway heard TEST", FAIL, f"no frame 0x{device_id:08X}/{counter} in "
                f"{where} after {timeout:.0f} s",
                "check the bridge and the radio settings match (`panicgw diag`), or move "
                "the button/gateway antenna; for Wi-Fi check PB_GATEWAY_URL")
        return
    kind, recs = found
    got = sorted({r["path"] for r in recs})
    missing = sorted(set(paths) - set(got))
    res.add("gateway heard TEST", PASS if not missing else WARN,
            f"stored as {kind} via {', '.join(got)}"
            + (f"; nothing via {', '.join(missing)}" if missing else ""),
            "" if not missing else f"check the {', '.join(missing)} path")
    for r in recs:
        entry = dict(r)
        entry["margin_db"] = link_margin(r["snr"], sf) if r["path"] == "lora" else None
        res.heard.append(entry)
        if r["path"] != "lora" or r["duplicate"]:
            continue
        m = entry["margin_db"]
        detail = f"RSSI {r['rssi']} dBm, SNR {r['snr']} dB at SF{sf}"
        if m is None:
            res.add("LoRa link margin", WARN, detail + ": no SNR reported")
        elif m >= MARGIN_GOOD_DB:
            res.add("LoRa link margin", PASS, f"{detail}: {m} dB above the SF{sf} floor")
        elif m >= MARGIN_MIN_DB:
            res.add("LoRa link margin", WARN, f"{detail}: only {m} dB margin",
                    "move the button or raise PB_SF (within the region's dwell limit)")
        else:
            res.add("LoRa link margin", FAIL, f"{detail}: {m} dB margin is too little",
                    "move the button, use an external antenna, or a gateway nearer the site")
    if next_line is None:
        return
    ack_end = time.monotonic() + ack_wait
    while ack is None and (left := ack_end - time.monotonic()) > 0:
        ack = _ack(next_line(min(left, 0.5)), counter)
    if res.test is not None:
        res.test["ack"] = ack
    if ack is None:
        res.add("button got ACK", WARN, f"the gateway stored the TEST but the button saw no "
                f"ACK within {ack_wait:.0f} s", "the button keeps retrying: check the "
                "bridge can transmit (`panicgw diag`) and PB_RX_WINDOW_MS")
    else:
        res.add("button got ACK", PASS, f"status {ack['status']} via {ack['path']}")
