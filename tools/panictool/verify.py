"""The checks behind `panictool verify`, independent of where the console lines come from.

A button's console (real serial port or a simulated board) yields lines. The proof that a
TEST reached the gateway is the gateway's own answer: the button prints every verified ACK
as ``PANIC-BUTTON ack: ... down=<hex>`` with the 18-byte downlink as received, and the tool
checks its tag with the key read from the board's NVM (:func:`check_ack`). Only the gateway
holding this button's key can make that tag, and it ACKs only what it has stored, so no
access to the gateway is needed. When the gateway can be reached, its view is added by a
``HeardSource``: the running gateway's status API (``GET /v1/frames``: the frames it
judged, rejections included, for a user who may not read the 0600 DB), or the gateway DB
(opened read-only through panicgw.access, beside the running daemon): uplink RSSI/SNR, and
why a TEST was rejected.
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
from panicgw import access
from panicproto import frames
from panicproto.errors import ProtocolError

PASS, WARN, FAIL, INFO = "PASS", "WARN", "FAIL", "INFO"
# SX127x demodulation floor (datasheet, BW 125 kHz): SNR a packet still decodes at.
SNR_FLOOR_DB = {7: -7.5, 8: -10.0, 9: -12.5, 10: -15.0, 11: -17.5, 12: -20.0}
MARGIN_GOOD_DB = 8.0  # fading and a closed shutter eat this much; below it, warn
MARGIN_MIN_DB = 3.0
PRESS_RE = re.compile(r"PANIC-BUTTON press: test counter=(\d+)", re.I)
ACK_RE = re.compile(r"PANIC-BUTTON ack: (\w+) counter=(\d+) status=(\d+) via (\w+)(.*)$")
_DOWN_HEX = re.compile("[0-9a-f]{" + str(2 * frames.DOWNLINK_LEN) + "}")
STATUS_NAMES = {frames.STORED: "STORED", frames.DELIVERED: "DELIVERED"}
REKEY_HINT = ("give both ends one key: `panictool rekey --config /etc/panicgw/gateway.toml` "
              "on the gateway, or `panicgw devices rekey ID --key-file F` there and "
              "`panictool rekey --use-key F` here")

LineSource = Callable[[float], str | None]  # next console line within timeout, or None


@dataclass
class AckLine:
    """One ``PANIC-BUTTON ack:`` console line (docs/firmware.md). Firmware before the
    downlink fields prints only the prefix: then ``down`` is None and so are the radio
    values; ``-`` (a Wi-Fi ACK has no RSSI) is None too."""

    kind: str
    counter: int
    status: int
    path: str
    rssi: int | None = None
    snr: float | None = None
    sf: int | None = None
    down: bytes | None = None
    problem: str = ""  # a field that is present but malformed

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "path": self.path, "rssi": self.rssi, "snr": self.snr,
                "sf": self.sf, "down": self.down.hex() if self.down is not None else None}


def _num(text: str, cast: Callable[[str], Any], name: str) -> tuple[Any, str]:
    if text == "-":
        return None, ""
    try:
        return cast(text), ""
    except ValueError:
        return None, f"{name}={text!r} is not a number"


def parse_ack(line: str | None) -> AckLine | None:
    """The ACK a console line reports, or None when it is not an ACK line."""
    m = ACK_RE.search(line or "")
    if m is None:
        return None
    ack = AckLine(m.group(1).lower(), int(m.group(2)), int(m.group(3)), m.group(4))
    fields = dict(tok.split("=", 1) for tok in m.group(5).split() if "=" in tok)
    problems = []
    for name, cast in (("rssi", int), ("snr", float), ("sf", int)):
        if name in fields:
            value, problem = _num(fields[name], cast, name)
            setattr(ack, name, value)
            if problem:
                problems.append(problem)
    if "down" in fields:
        if _DOWN_HEX.fullmatch(fields["down"]):
            ack.down = bytes.fromhex(fields["down"])
        else:
            problems.append(f"down={fields['down'][:40]!r} is not {frames.DOWNLINK_LEN} bytes "
                            "of lowercase hex")
    ack.problem = "; ".join(problems)
    return ack


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
    downlink: dict[str, Any] | None = None  # the ACK as the button heard it: rssi, snr, sf

    def add(self, name: str, status: str, detail: str, hint: str = "") -> Check:
        c = Check(name, status, detail, hint)
        self.checks.append(c)
        return c

    @property
    def ok(self) -> bool:
        return all(c.status != FAIL for c in self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [asdict(c) for c in self.checks],
                "boot_report": self.report, "test": self.test, "downlink": self.downlink,
                "heard": self.heard}


def link_margin(snr: float | None, sf: int) -> float | None:
    """dB above the demodulation floor for ``sf`` (None when the path has no SNR)."""
    if snr is None or sf not in SNR_FLOOR_DB:
        return None
    return round(snr - SNR_FLOOR_DB[sf], 1)


_EXCEPTION_LINE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt)\b.*")


def read_boot_report(next_line: LineSource, timeout: float,
                     crash: list[str] | None = None) -> dict[str, Any] | None:
    """The ``PANIC-BUTTON {json}`` boot report code.py prints first. A code.py that dies
    with a traceback before printing one ends the wait at once; its exception line goes
    into ``crash`` (when given) so the check can say what broke."""
    end = time.monotonic() + timeout
    in_traceback = False
    while (left := end - time.monotonic()) > 0:
        line = next_line(left)
        if line is None:
            continue
        rep = report.parse(line)
        if rep is not None:
            return rep
        if line.startswith("Traceback (most recent call last)"):
            in_traceback = True
        elif in_traceback and _EXCEPTION_LINE.match(line.strip()):
            if crash is not None:
                crash.append(line.strip())
            return None
    return None


def check_report(res: Result, rep: dict[str, Any] | None, rec: Any,
                 board_fp: str | None, fp_of: Callable[[bytes], str],
                 crash: str | None = None) -> None:
    """Boot report, firmware version and key fingerprint against the registry record."""
    if rep is None:
        if crash:
            res.add("boot report", FAIL, f"code.py stopped before its boot report: {crash}",
                    "flash the firmware again (`panictool flash`); if it repeats, read the "
                    "whole traceback with `panictool console --reload`")
        else:
            res.add("boot report", FAIL, "no PANIC-BUTTON line on the console",
                    "is the button firmware flashed (`panictool flash`)? press reset and "
                    "retry")
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
                f"the gateway will reject this button: {REKEY_HINT}")
    else:
        res.add("key fingerprint", PASS, board_fp)
    for part in ("radio", "wifi"):
        v = str(rep.get(part, "absent"))
        if v.startswith("fail"):
            res.add(part, FAIL if not rep.get("paths") else WARN, v,
                    "check the antenna/wiring" if part == "radio" else
                    "check PB_WIFI_SSID/PB_WIFI_PASSWORD and the shop's Wi-Fi")


def wait_for_press(next_line: LineSource, timeout: float,
                   tick: Callable[[float | None], None] | None = None
                   ) -> tuple[int | None, list[str]]:
    """Counter of the TEST the button queued, and the console lines seen meanwhile."""
    seen: list[str] = []
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        line = next_line(min(left, 0.5))
        if tick is not None:
            tick(None)
        if line is None:
            continue
        seen.append(line)
        m = PRESS_RE.search(line)
        if m:
            return int(m.group(1)), seen
    return None, seen


def heard(db: Path, device_id: int, counter: int) -> tuple[str, list[dict[str, Any]]] | None:
    """(event kind, receptions) of the frame (device, counter) of the device's current key
    generation in the gateway DB, or None. A rekey restarts the counter, so the same counter
    under an older key is another, older frame."""
    store = access.open_db(db, readonly=True)
    try:
        return store.frame_heard(device_id, counter)
    finally:
        store.close()


HeardSource = Callable[[int, int], "tuple[str, list[dict[str, Any]]] | None"]


def db_source(db: Path) -> HeardSource:
    """What the gateway stored, read from its DB (needs read access to the 0600 file)."""
    return lambda device_id, counter: heard(db, device_id, counter)


def api_source(url: str) -> HeardSource:
    """What the running gateway judged, from its status API (``GET /v1/frames``): works
    for a user who may not read the DB. A TEST the gateway rejected comes back as the kind
    ``rejected:<reason>`` with no receptions. Only frames judged after this source was made
    count (the ring's sequence number then): a rekey restarts the button's counter, so an
    older frame with the TEST's counter may still be in the ring."""
    base = url.rstrip("/")
    since = 0
    try:  # a `since` above the newest entry answers with the newest sequence number
        with urllib.request.urlopen(f"{base}/v1/frames?since={2**53}&limit=0", timeout=5) as r:
            since = int(json.load(r)["next"])
    except (OSError, ValueError, KeyError, TypeError):
        pass  # the first read reports why the API cannot be had

    def get(device_id: int, counter: int) -> tuple[str, list[dict[str, Any]]] | None:
        q = f"{base}/v1/frames?device={device_id:08X}&since={since}&limit=500"
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


def wait_for_ack(next_line: LineSource, counter: int, timeout: float,
                 tick: Callable[[float | None], None] | None = None) -> AckLine | None:
    """The button's ACK line for ``counter`` within ``timeout`` s (``tick`` is called as it
    waits, for a progress display)."""
    end = time.monotonic() + timeout
    while (left := end - time.monotonic()) > 0:
        ack = parse_ack(next_line(min(left, 0.5)))
        if tick is not None:
            tick(None)
        if ack is not None and ack.counter == counter:
            return ack
    return None


def grade_margin(res: Result, name: str, rssi: float | None, snr: float | None,
                 sf: int | None) -> float | None:
    """One LoRa direction's margin check (PASS >= 8 dB, WARN >= 3 dB, else FAIL)."""
    m = link_margin(snr, sf) if sf is not None else None
    # One format whichever source reported it (the DB stores floats, the status API and
    # the button's ACK line integers): RSSI as a whole number when it is one, SNR with
    # one decimal.
    detail = (f"RSSI {'-' if rssi is None else format(rssi, 'g')} dBm, SNR "
              f"{'-' if snr is None else format(snr, '.1f')} dB at SF{sf}")
    if m is None:
        res.add(name, WARN, detail + ": no SNR reported")
    elif m >= MARGIN_GOOD_DB:
        res.add(name, PASS, f"{detail}: {m} dB above the SF{sf} floor")
    elif m >= MARGIN_MIN_DB:
        res.add(name, WARN, f"{detail}: only {m} dB margin",
                "move the button or raise PB_SF (within the region's dwell limit)")
    else:
        res.add(name, FAIL, f"{detail}: {m} dB margin is too little",
                "move the button, use an external antenna, or a gateway nearer the site")
    return m


def check_ack(res: Result, ack: AckLine | None, key: bytes | None, device_id: int,
              counter: int, waited: float, firmware: str | None = None) -> bool:
    """Grade the button's ACK of the TEST: its downlink's tag under the board's own key,
    device id and counter, then the downlink's radio margin. True when the ACK proves the
    gateway stored the TEST (its tag checked here); False leaves the proof to the gateway's
    view (a firmware printing no downlink), or there is none."""
    if ack is None:
        res.add("gateway ACK", FAIL, f"the button got no ACK for TEST counter {counter} "
                f"within {waited:.0f} s",
                "the gateway did not store it: is the device on the gateway (`panicgw "
                "devices import` with the provision export), the bridge up and on the "
                "button's frequency/SF (`panicgw diag`), and for Wi-Fi PB_GATEWAY_URL right?")
        return False
    status = STATUS_NAMES.get(ack.status, str(ack.status))
    if res.test is not None:
        res.test["ack"] = ack.to_dict()
    if ack.down is None:
        res.add("gateway ACK", WARN, f"the button reports an ACK ({status} via {ack.path}) "
                f"but firmware {firmware or '?'} prints no downlink to check"
                + (f" ({ack.problem})" if ack.problem else ""),
                "flash the current firmware (`panictool flash`) so verify checks the "
                "gateway's signature itself")
        return False
    if key is None:
        res.add("gateway ACK", WARN, f"ACK {status} via {ack.path} not checked: the key was "
                "not read from the board")
        return False
    try:
        down = frames.decode_downlink(ack.down, key)
    except ProtocolError as e:
        if e.reason == "bad_tag":
            res.add("gateway ACK", FAIL, "the ACK's tag does not verify under this button's "
                    "key: the gateway that answered holds another key for it", REKEY_HINT)
        else:
            res.add("gateway ACK", FAIL, f"the ACK's downlink does not decode ({e})",
                    "read the console (`panictool console`); report it with the line")
        return False
    if down.kind != frames.ACK or down.device_id != device_id or down.counter != counter:
        res.add("gateway ACK", FAIL, f"the signed downlink is {down.fields()['type']} for "
                f"0x{down.device_id:08X}/{down.counter}, not an ACK of TEST "
                f"0x{device_id:08X}/{counter}", "run verify again; if it repeats, read the "
                "console (`panictool console`)")
        return False
    res.add("gateway ACK", PASS, f"{STATUS_NAMES.get(down.status, down.status)} via "
            f"{ack.path}, signed with this button's key (the gateway stored TEST "
            f"counter {counter})")
    if res.test is not None:
        res.test["ack"]["signed"] = True
    if ack.path == "lora":
        margin = grade_margin(res, "LoRa downlink margin", ack.rssi, ack.snr, ack.sf)
        res.downlink = {"rssi": ack.rssi, "snr": ack.snr, "sf": ack.sf, "margin_db": margin}
    return True


def check_heard(res: Result, source: HeardSource, where: str, device_id: int, counter: int,
                paths: list[str], sf: int, timeout: float, required: bool = True) -> None:
    """The gateway's view: wait until it stored the TEST (and each of the button's paths
    delivered a copy, or ``timeout`` passed), then grade each LoRa copy's uplink margin.
    ``required=False`` when the signed ACK already proved the TEST stored: a gateway view
    that cannot be had is then a warning, not a failure."""
    bad = FAIL if required else WARN
    end = time.monotonic() + timeout
    found = None
    while True:
        try:
            found = source(device_id, counter)
        except (access.AccessError, sqlite3.Error, OSError, ValueError, KeyError) as e:
            res.add("gateway heard TEST", bad, f"cannot read {where}: {e}",
                    "pass the gateway's status API (--gateway http://127.0.0.1:8765 on the "
                    "gateway) or its config (--config /etc/panicgw/gateway.toml)")
            return
        if found and found[0].startswith("rejected:"):
            reason = found[0].split(":", 1)[1]
            res.add("gateway heard TEST", FAIL, f"the gateway heard frame "
                    f"0x{device_id:08X}/{counter} but rejected it: {reason}",
                    (f"bad_tag: the gateway has another key for this button (an older "
                     f"export imported after a rekey?): {REKEY_HINT}, or import an export "
                     "with the current key generation") if reason == "bad_tag" else
                    "unknown_device: the gateway has no record of this button: `panicgw "
                    "devices import FILE` with the provision export" if reason ==
                    "unknown_device" else "read `panicgw diag` on the gateway")
            return
        if found and {r["path"] for r in found[1]} >= set(paths):
            break
        if time.monotonic() >= end:
            break
        time.sleep(0.2)
    if found is None:
        res.add("gateway heard TEST", bad, f"no frame 0x{device_id:08X}/{counter} in "
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
        grade_margin(res, "LoRa uplink margin", r["rssi"], r["snr"], sf)
