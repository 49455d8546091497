"""End to end, the installer's day with one button and no hands on it: `panictool provision`
-> `panicgw devices import` -> `panicgw run` on a virtual LoRa bridge -> `panictool verify`,
which triggers the TEST transmission itself.

The board is a simulated Feather RP2040 RFM (panicsim.SimButton) running the real
firmware/button/code.py, on the same simulated air as the virtual bridge (real bridge
firmware) that the gateway opens. Its USB console is a pty (panicsim.console) with a real
raw REPL: the tools' snippets are executed with CPython against the board's NVM and its
CIRCUITPY directory, Ctrl-C really stops code.py and Ctrl-D really reloads it (the firmware
re-reads settings.toml and NVM from the top). Both CLIs run as installed console scripts.
Nothing is canned: provision writes the identity through that REPL, verify writes the TEST
request through it and soft-reboots; the firmware erases the request, sends one TEST frame
over the air, the bridge hands it to the gateway, and the gateway ACKs it. The test checks
verify's JSON against what actually happened: the frame on the air, the gateway DB row and
reception (path, RSSI, SNR), the button's console, and the erased request in NVM.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from e2ekit import free_port, stop_group, wait_for

from panicbutton import nvmstore
from panicproto import frames
from panicsim import Air, SimButton, SimClock, start_virtual_bridge

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "tools"))
from drivefakes import make_circuitpy  # noqa: E402

RSSI, SNR = -104.0, -3.0  # SF9 floor is -12.5 dB: 9.5 dB margin, a PASS






def _status(data: Path) -> dict:
    try:
        port = json.loads((data / "runtime.json").read_text())["status_port"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
            return json.loads(r.read())
    except (OSError, ValueError, KeyError):
        return {}


@pytest.fixture
def gateway_proc():
    box: list[subprocess.Popen] = []
    yield box
    for p in box:
        stop_group(p)


def test_verify_triggers_test_over_usb_and_gateway_hears_it(tmp_path, gateway_proc):
    air = Air(SimClock(1.0), seed=11, rssi=RSSI, snr=SNR)
    bridge = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9},
                                  link_dir=str(tmp_path))
    cp = make_circuitpy(tmp_path / "CIRCUITPY")
    btn = SimButton(0, bytes(16), air=air, provisioned=False, drive=cp, name="kasir")
    btn.flash()  # the board runs what is on its drive: what `panictool flash` writes
    usb = btn.usb_console(link_dir=tmp_path)
    try:
        btn.start()  # a flashed, unprovisioned button: it reports "not provisioned"
        assert btn.wait_for_line(lambda ln: "PANIC-BUTTON ERROR" in ln, 15), btn.console

        # 1. Provision through the board's USB console and CIRCUITPY drive.
        export = tmp_path / "today.json"
        r = subprocess.run(
            [str(BIN / "panictool"), "provision", "--site-name", "Toko Emas Mulia", "--kind",
             "shop", "--address", "Jl. Malioboro 52", "--lat", "-7.79", "--lon", "110.37",
             "--label", "kasir", "--export", str(export), "--drive", str(cp), "--port",
             usb.path, "--label-dir", str(tmp_path / "labels"), "--sf", "9", "--frequency",
             "921.4", "--no-qr", "--json"],
            capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        dev = json.loads(r.stdout)["device_id"]
        ident = nvmstore.read_identity(btn.nvm.data)
        assert ident is not None and ident[0] == dev
        key = ident[1]

        # 2. Gateway: import the export, run on the virtual bridge.
        data = tmp_path / "gw"
        cfg = tmp_path / "gateway.toml"
        cfg.write_text(
            f'[gateway]\nid = "gw-verify"\ndata_dir = "{data}"\nlog_format = "text"\n'
            f'[serial]\nport = "{bridge.port_path}"\nfrequency_mhz = 921.4\n'
            f'spreading_factor = 9\n[http]\nhost = "127.0.0.1"\nport = {free_port()}\n'
            '[status]\nport = 0\n')
        # The daemon creates its DB; tools only ever open it (contract C3).
        log = (tmp_path / "gateway.log").open("wb")
        gateway_proc.append(subprocess.Popen(
            [str(BIN / "panicgw"), "run", "--config", str(cfg)], stdout=log,
            stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: (_status(data).get("bridge") or {}).get("state") == "connected", 20,
              "gateway connected to the bridge")
        r = subprocess.run([str(BIN / "panicgw"), "devices", "import", "--config", str(cfg),
                            str(export), "--json"], capture_output=True, text=True, timeout=30)
        assert r.returncode == 0, r.stdout + r.stderr
        wait_for(lambda: _status(data).get("devices") == 1, 15,
                 "the running gateway reloaded its registry")
        db = data / "gateway.db"

        # 3. verify: nobody touches the button.
        n_air = len(air.stats.log)
        n_console = len(btn.console)
        r = subprocess.run([str(BIN / "panictool"), "verify", "--port", usb.path,
                            "--gateway-db", str(db), "--timeout", "30", "--json"],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        doc = json.loads(r.stdout)

        # 4. Again as an installer who may not read the service's DB: the registry from the
        # export file, "did the gateway hear it" from its status API (GET /v1/frames).
        status_port = json.loads((data / "runtime.json").read_text())["status_port"]
        status_url = f"http://127.0.0.1:{status_port}"
        r = subprocess.run([str(BIN / "panictool"), "verify", "--port", usb.path,
                            "--export", str(export), "--gateway", status_url,
                            "--timeout", "30", "--json"],
                           capture_output=True, text=True, timeout=90)
        assert r.returncode == 0, r.stdout + r.stderr
        doc2 = json.loads(r.stdout)

        # 5. At the shop, with nothing of the gateway at hand: the signed ACK is the proof.
        r = subprocess.run([str(BIN / "panictool"), "verify", "--port", usb.path,
                            "--timeout", "30", "--json"], capture_output=True, text=True,
                           timeout=90, env=dict(os.environ, PANICGW_CONFIG=str(tmp_path / "x")))
        doc3 = json.loads(r.stdout)
        rc3 = r.returncode
    finally:
        btn.stop()
        bridge.stop()

    checks = {c["name"]: c for c in doc["checks"]}
    assert doc["ok"] is True
    for name in ("registered", "boot report", "firmware version", "key fingerprint",
                 "TEST sent", "gateway heard TEST", "LoRa uplink margin"):
        assert checks[name]["status"] == "PASS", (name, doc["checks"])
    assert "TEST request" not in checks  # no fallback to a manual press
    test = doc["test"]
    assert test["trigger"] == "usb" and doc["boot_report"]["remote_test"] == test["nonce"]
    counter = test["counter"]
    assert (test["ack"]["status"], test["ack"]["path"]) == (frames.STORED, "lora")
    assert [(h["path"], h["rssi"], h["snr"], h["margin_db"]) for h in doc["heard"]
            if not h["duplicate"]] == [("lora", RSSI, SNR, 9.5)]
    assert "9.5 dB above the SF9 floor" in checks["LoRa uplink margin"]["detail"]

    # What really happened: one TEST frame on the air with that counter ...
    sent = []
    for _t, sender, raw, _sf in air.stats.log[n_air:]:
        if sender == btn.name:
            up = frames.decode_uplink(raw, key)
            sent.append((up.kind, up.counter))
    tests = [c for k, c in sent if k == frames.TEST]
    assert tests and set(tests) >= {counter, doc2["test"]["counter"]}, sent
    # ... stored by the gateway as the device's TEST, heard on LoRa with the air's RSSI/SNR,
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        row = con.execute("SELECT id, kind FROM events WHERE device_id = ? AND counter = ?",
                          (dev, counter)).fetchone()
        assert row is not None and row[1] == "test", row
        recs = con.execute("SELECT path, rssi, snr FROM receptions WHERE event_id = ?",
                           (row[0],)).fetchall()
        n_tests = con.execute("SELECT COUNT(*) FROM events WHERE device_id = ? AND "
                              "kind = 'test'", (dev,)).fetchone()[0]
    finally:
        con.close()
    assert recs[0] == ("lora", RSSI, SNR) and n_tests == 3  # doc's, doc2's and doc3's
    # ... queued once by the firmware after its boot report, and the request erased.
    after = btn.console[n_console:]
    presses = [ln for ln in after if ln.startswith("PANIC-BUTTON press: test")]
    assert presses == [f"PANIC-BUTTON press: test counter={c}"
                       for c in (counter, doc2["test"]["counter"], doc3["test"]["counter"])
                       ], after
    acks = [ln for ln in after if ln.startswith(f"PANIC-BUTTON ack: test counter={counter} ")]
    assert acks and acks[0].startswith(
        f"PANIC-BUTTON ack: test counter={counter} status=1 via lora"), after
    assert nvmstore.read_remote_test(btn.nvm.data) is None
    assert usb.reloads == 4 and usb.execs > 0  # provision, then each verify: code.py again
    # The status-API run: a new TEST (new counter), heard and graded the same way.
    checks2 = {c["name"]: c["status"] for c in doc2["checks"]}
    assert doc2["ok"] is True and checks2["gateway heard TEST"] == "PASS", doc2["checks"]
    assert doc2["test"]["counter"] > counter and doc2["test"]["trigger"] == "usb"
    assert [(h["path"], h["rssi"], h["snr"], h["margin_db"]) for h in doc2["heard"]
            if not h["duplicate"]] == [("lora", RSSI, SNR, 9.5)]

    # The laptop run (no registry, no gateway view) stands on the signed ACK alone.
    checks3 = {c["name"]: c for c in doc3["checks"]}
    assert checks3["registered"]["status"] == "INFO" and "gateway heard TEST" not in checks3
    # The C2 ACK line: the downlink as received, which verify checks with the board's key.
    assert re.fullmatch(rf"PANIC-BUTTON ack: test counter={counter} status=1 via lora "
                        r"rssi=-?\d+ snr=-?\d+\.\d sf=9 down=[0-9a-f]{36}", acks[0]), acks[0]
    down = bytes.fromhex(acks[0].rsplit("down=", 1)[1])
    assert down in [raw for _t, sender, raw, _sf in air.stats.log[n_air:]
                    if sender == bridge.name], "the ACK line's downlink was never on air"
    ack = frames.decode_downlink(down, key)
    assert (ack.device_id, ack.counter, ack.status) == (dev, counter, frames.STORED)
    assert rc3 == 0 and doc3["ok"] is True, doc3["checks"]
    assert checks3["gateway ACK"]["status"] == "PASS", doc3["checks"]
    assert "signed with this button's key" in checks3["gateway ACK"]["detail"]
    assert checks3["LoRa downlink margin"]["status"] == "PASS", doc3["checks"]
    assert doc3["downlink"]["sf"] == 9 and doc3["downlink"]["margin_db"] is not None
    # the signed route is also taken when the gateway's view is there
    assert checks["gateway ACK"]["status"] == "PASS", doc["checks"]
