"""End to end, as a user would: `panictool provision` writes a button's identity into a
board's NVM (a MicroPython VM on a pty) and its settings.toml onto a CIRCUITPY directory,
and the device into an export file; `panicgw devices import` registers it; `panicgw
dispatch-server` receives; `panicgw run` runs the gateway on a virtual LoRa bridge. The
simulated button boots the real firmware from exactly that NVM image and settings.toml,
and is pressed. Dispatch must receive exactly the documented JSON (schema, the example's
fields, the provisioned site, Contact ID), once, authenticated.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import sqlite3
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import jsonschema
import pytest
from e2ekit import free_port, stop_group, wait_for

from panicbutton.nvmstore import read_identity
from panicgw.forward.contract import SCHEMA_PATH, SIGNATURE_HEADER, verify_signature
from panicsim import Air, SimButton, SimClock, start_virtual_bridge

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "tools"))  # the tools area's MicroPython board on a pty
from drivefakes import make_circuitpy  # noqa: E402
from mpboard import MpBoard  # noqa: E402

SITE = {"name": "Toko Emas Mulia", "kind": "shop", "address": "Jl. Malioboro 52, Yogyakarta",
        "lat": -7.7925, "lon": 110.3658, "contact": "Pak Budi", "phone": "+62 811 2345 678"}


def _documented_example() -> dict:
    """The first JSON example in docs/dispatch-api.md: the shape integrators code against."""
    text = (ROOT / "docs" / "dispatch-api.md").read_text()
    m = re.search(r"```json\n(.*?)\n```", text, re.S)
    assert m, "docs/dispatch-api.md has no JSON example"
    return json.loads(m.group(1))


def _keys(doc: object) -> object:
    if isinstance(doc, dict):
        return {k: _keys(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [_keys(doc[0])] if doc else []
    return None


@pytest.fixture
def board(tmp_path):
    (tmp_path / "mp").mkdir()
    b = MpBoard(tmp_path / "mp").start()
    try:
        yield b
    finally:
        b.stop()


@pytest.fixture
def procs():
    running: list[subprocess.Popen] = []
    yield running
    for p in reversed(running):
        stop_group(p)


@pytest.mark.parametrize("paths", [["lora"], ["lora", "wifi"]])
def test_provision_import_run_press_reaches_dispatch(paths, board, procs, tmp_path):
    # 1. Provision (installed console script) a button: NVM over the raw REPL, settings.
    wifi = "wifi" in paths
    http_port = free_port()
    extra = ["--wifi-ssid", "TokoEmas", "--gateway-url", f"http://127.0.0.1:{http_port}",
             "--board-profile", "feather_esp32s3_rfm95_wing"] if wifi else []
    cp = make_circuitpy(board.fs, board="adafruit_feather_esp32s3_nopsram" if wifi
                        else "adafruit_feather_rp2040_rfm")
    export = tmp_path / "today.json"
    r = subprocess.run(
        [str(BIN / "panictool"), "provision", "--site-name", SITE["name"], "--kind",
         SITE["kind"], "--address", SITE["address"], "--lat", str(SITE["lat"]), "--lon",
         str(SITE["lon"]), "--contact", SITE["contact"], "--phone", SITE["phone"],
         "--label", "kasir", "--export", str(export), "--drive", str(cp), "--port", board.port,
         "--label-dir", str(tmp_path / "labels"), "--sf", "9", "--frequency", "921.4",
         "--no-qr", "--json", *extra],
        capture_output=True, text=True, timeout=90,
        env=dict(os.environ, PANICTOOL_WIFI_PASSWORD="rahasia-toko"))  # never in argv
    assert r.returncode == 0, r.stdout + r.stderr
    dev = json.loads(r.stdout)["device_id"]
    nvm = board.nvm()
    ident = read_identity(bytearray(nvm))
    assert ident is not None and ident[0] == dev
    key = ident[1]
    assert key.hex() not in r.stdout + r.stderr

    # 2. Dispatch receiver (installed console script), token + signature required.
    token, secret = secrets.token_hex(16), secrets.token_hex(32)
    dport = free_port()
    record = tmp_path / "dispatch.jsonl"
    env = dict(os.environ, PANICGW_DISPATCH_TOKEN=token, PANICGW_DISPATCH_SECRET=secret)
    procs.append(subprocess.Popen(
        [str(BIN / "panicgw"), "dispatch-server", "--port", str(dport), "--record", str(record),
         "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        start_new_session=True))
    wait_for(lambda: _answers(f"http://127.0.0.1:{dport}/healthz"), 15, "dispatch-server")

    # 3. Gateway config, import the export file, run the gateway on a virtual bridge.
    air = Air(SimClock(1.0), seed=5)
    bridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9},
                                  link_dir=str(tmp_path))
    btn = None
    try:
        data = tmp_path / "gw"
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nid = "gw-e2e"\ndata_dir = "{data}"\nlog_format = "text"\n'
            f'[serial]\nport = "{bridge.port_path}"\nfrequency_mhz = 921.4\n'
            'spreading_factor = 9\n'
            f'[http]\nhost = "127.0.0.1"\nport = {http_port}\n[status]\nport = 0\n'
            f'[dispatch]\nurl = "http://127.0.0.1:{dport}/v1/events"\nallow_insecure_http = true\n'
            f'token = "{token}"\n'
            f'secret = "{secret}"\n')
        # The daemon creates its DB; tools only ever open it (contract C3).
        log = (tmp_path / "gateway.log").open("wb")
        procs.append(subprocess.Popen([str(BIN / "panicgw"), "run", "--config", str(cfg)],
                                      stdout=log, stderr=subprocess.STDOUT,
                                      start_new_session=True))
        status_port = wait_for(lambda: _runtime(data), 20, "gateway runtime.json")
        r = subprocess.run([str(BIN / "panicgw"), "devices", "import", "--config", str(cfg),
                            str(export), "--json"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        assert key.hex() not in r.stdout + r.stderr
        wait_for(lambda: _status(status_port).get("devices") == 1, 15,
                 "the running gateway reloaded its registry")
        wait_for(lambda: (_status(status_port).get("bridge") or {}).get("state") == "connected",
              15, "gateway connected to the bridge")

        # 4. The button boots the real firmware from the provisioned NVM and settings.toml.
        btn = SimButton(dev, key, air=air, settings_toml=cp / "settings.toml",
                        provisioned=False, nvm_size=len(nvm),
                        board="feather_esp32s3_rfm95_wing" if wifi else "feather_rp2040_rfm95",
                        wifi_networks={"TokoEmas": "rahasia-toko"} if wifi else None)
        btn.nvm.data[:] = nvm
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        rep = btn.boot_reports()[0]
        assert rep["device_id"] == dev and rep["paths"] == paths, rep
        btn.alarm()
        assert btn.wait_for_line(lambda ln: "ack: alarm" in ln, 20), btn.console[-5:]
        btn.test()
        assert btn.wait_for_line(lambda ln: "ack: test" in ln, 20), btn.console[-5:]

        def got() -> list[dict]:
            if not record.exists():
                return []
            lines = [json.loads(x) for x in record.read_text().splitlines() if x.strip()]
            evs = {(x.get("body") or {}).get("event") for x in lines}
            return lines if {"panic", "test"} <= evs else []

        wait_for(got, 20, "panic and test at dispatch")
        # Once nothing is left pending in the gateway's outbox, nothing more is sent: a
        # duplicate delivery (a second outbox row, a retried one) is in the record by then.
        wait_for(lambda: _outbox_settled(data / "gateway.db"), 20, "the outbox settled")
        lines = got()
        if wifi:  # the gateway heard the panic on both paths (and delivered it once, below)
            db = sqlite3.connect(f"file:{data / 'gateway.db'}?mode=ro", uri=True)
            try:
                heard = {r[0] for r in db.execute(
                    "SELECT r.path FROM receptions r JOIN events e ON e.id = r.event_id "
                    "WHERE e.device_id = ? AND e.kind = 'alarm'", (dev,))}
            finally:
                db.close()
            assert heard == {"lora", "wifi"}, heard
    finally:
        if btn is not None:
            btn.stop()
        bridge.stop()

    # 5. What dispatch received: exactly one authenticated, schema-valid panic and test.
    schema = json.loads(SCHEMA_PATH.read_text())
    example = _documented_example()
    for x in lines:
        assert x["status"] == 200 and x["verdict"] in ("accepted", "duplicate"), x
        jsonschema.validate(x["body"], schema)
    device_events = [x for x in lines if x["body"]["device"] is not None]
    panic = [x for x in device_events if x["body"]["event"] == "panic"]
    test = [x for x in device_events if x["body"]["event"] == "test"]
    assert [x["verdict"] for x in panic] == ["accepted"], panic
    assert [x["verdict"] for x in test] == ["accepted"], test
    for x, code in ((panic[0], 122), (test[0], 601)):
        body = x["body"]
        assert _keys(body) == _keys(example), "body differs from docs/dispatch-api.md example"
        assert body["site"] == SITE
        assert body["device"]["id"] == f"{dev:08X}" and body["device"]["label"] == "kasir"
        assert body["contact_id"]["code"] == code and body["contact_id"]["qualifier"] == 1
        assert body["contact_id"]["display"] == f"1{code:03d}"
        assert body["gateway_id"] == "gw-e2e" and body["paths"][0]["path"] in paths
        assert body["incident_id"].startswith(f"{dev:08X}-")
        assert x["idempotency_key"] == body["idempotency_key"]
        headers = {k.lower(): v for k, v in x["headers"].items()}
        assert "authorization" not in headers  # the recorder never stores the token
        # The server verified token and signature (it answers 401 otherwise); the header is
        # well-formed and fresh, so another secret fails on the MAC itself.
        sig = headers[SIGNATURE_HEADER.lower()]
        assert re.fullmatch(r"t=\d+,v1=[0-9a-f]{64}", sig), sig
        raw = json.dumps(body, separators=(",", ":")).encode()
        assert verify_signature(b"another-secret", sig, raw, time.time(), 300.0) == \
            "bad signature"
    assert panic[0]["body"]["category"] == "alarm" and panic[0]["body"]["test"] is False
    assert test[0]["body"]["category"] == "event" and test[0]["body"]["test"] is True


def _outbox_settled(db: Path) -> bool:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return con.execute("SELECT COUNT(*) FROM outbox WHERE state = 'pending'"
                           ).fetchone()[0] == 0
    finally:
        con.close()


def _answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as r:
            return r.status == 200
    except OSError:
        return False


def _runtime(data: Path) -> int | None:
    try:
        info = json.loads((data / "runtime.json").read_text())
    except (OSError, ValueError):
        return None
    return info.get("status_port")


def _status(port: int) -> dict:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError):
        return {}
