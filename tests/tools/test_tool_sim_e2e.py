"""End to end: provision into the gateway DB, a running `panicgw run`, simulated buttons
running the real firmware press TEST over Wi-Fi HTTP and over a virtual LoRa bridge on a pty,
and the verify checks find the frames in the gateway DB with their paths and link margin."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from panicgw import access, registry
from panicgw.store import Store
from panicsim import Air, SimButton, SimClock, start_virtual_bridge
from panictool import identity, verify
from panictool.cli import app
from panictool.sim_load import Press, Tracker

ROOT = Path(__file__).resolve().parents[2]
PANICGW = ROOT / ".venv" / "bin" / "panicgw"
runner = CliRunner()


def start_gateway(tmp_path: Path, serial_port: str | None = None) -> tuple[subprocess.Popen,
                                                                             Path, int]:
    data = tmp_path / "gw"
    cfg = tmp_path / "gateway.toml"
    serial = (f'[serial]\nenabled = true\nport = "{serial_port}"\nspreading_factor = 9\n'
              'frequency_mhz = 921.4\n' if serial_port else "[serial]\nenabled = false\n")
    cfg.write_text(
        f'[gateway]\nid = "gw-e2e"\ndata_dir = "{data}"\nlog_format = "text"\n'
        '[http]\nhost = "127.0.0.1"\nport = 0\nrate_per_s = 1000.0\nrate_burst = 1000\n'
        '[status]\nport = 0\n' + serial)
    proc = subprocess.Popen([str(PANICGW), "run", "--config", str(cfg)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            start_new_session=True)
    runtime = data / "runtime.json"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if runtime.exists():
            try:
                info = json.loads(runtime.read_text())
                if info.get("http_port"):
                    return proc, data / "gateway.db", int(info["http_port"])
            except ValueError:
                pass
        if proc.poll() is not None:
            break
        time.sleep(0.05)
    stop(proc)
    raise RuntimeError("gateway did not start: " + proc.stderr.read().decode()[-2000:])


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(5)


@pytest.fixture
def gateway(tmp_path):
    proc, db, port = start_gateway(tmp_path)
    try:
        yield db, f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


def test_sim_load_over_wifi(gateway):
    db, url = gateway
    r = runner.invoke(app, ["sim", "--gateway-url", url, "--gateway-db", str(db),
                            "--buttons", "3", "--rate", "5", "--json", "--seed", "7"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output.strip().splitlines()[-1])
    assert doc["ready"] == 3 and doc["presses"] == 3 and doc["acknowledged"] == 3
    assert doc["ack_paths"] == {"wifi": 3} and doc["unrecognised"] == 0
    assert doc["cleanup"] == {"removed_from": str(db), "devices": 3}
    s = Store(db)
    try:
        # gone from the registry (no supervision-lost to police later), history kept
        assert s.list_devices() == []
        kinds = [e["kind"].upper() for e in s.recent_events(100)]
    finally:
        s.close()
    assert kinds.count("TEST") == 3, kinds


def test_sim_duration_is_honoured_and_busy_buttons_are_not_queued(gateway):
    """`--duration 4` at 4 presses/s on one button: the button takes one press at a time
    with the firmware's quiet gap after it, so most presses find it busy; they are
    skipped and counted, not queued to run on long after the duration (issue 10: a
    `--duration 90` ran ~160 s), and every press made is recognised and acknowledged."""
    db, url = gateway
    r = runner.invoke(app, ["sim", "--gateway-url", url, "--gateway-db", str(db),
                            "--duration", "4", "--rate", "4", "--seed", "3"])
    assert r.exit_code == 0, r.output
    out = r.output
    assert "waiting for 1 buttons' first heartbeat" in out  # progress, not silence
    m = re.search(r"(\d+) presses skipped: every button was still busy", out)
    assert m and int(m.group(1)) >= 5, out
    m = re.search(r"(\d+) TEST presses, (\d+) acknowledged, 0 not \(([\d.]+) s of pressing",
                  out)
    assert m and 1 <= int(m.group(1)) <= 2 and m.group(1) == m.group(2), out
    # a press started before the end runs its clicks out; none starts after it
    assert float(m.group(3)) < 4 + 5, out
    assert "not recognised" not in out


def test_sim_removes_its_buttons_when_terminated(gateway):
    """SIGTERM (a service manager, `timeout`) mid-run: the buttons go all the same."""
    db, url = gateway
    proc = subprocess.Popen([str(ROOT / ".venv" / "bin" / "panictool"), "sim",
                             "--gateway-url", url, "--gateway-db", str(db), "--buttons", "2",
                             "--duration", "60", "--rate", "0.5"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            start_new_session=True)
    try:
        def registered() -> int:
            s = Store(db)
            try:
                return len(s.list_devices())
            finally:
                s.close()

        deadline = time.monotonic() + 20
        while registered() < 2 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert registered() == 2
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 143
    finally:
        stop(proc)
    assert registered() == 0


def test_provisioned_button_test_press_heard(tmp_path):
    """The record `provision` registers is the one a button with that NVM identity uses;
    its TEST press is found by the verify checks with the Wi-Fi path. (Registered before
    the daemon starts; the sim test registers into a running one.)"""
    device_id, key = identity.new_identity()
    rec = registry.DeviceRecord(device_id, key, registry.SiteRecord(
        "Toko Maju", "shop", "Jl. Merdeka 12", -6.9, 107.6), "counter", ["wifi"], 3600, "0.1.0")
    Store(tmp_path / "gw" / "gateway.db").close()  # C3: only the gateway creates it
    access.register(tmp_path / "gw" / "gateway.db", rec)
    proc, db, port = start_gateway(tmp_path)
    url = f"http://127.0.0.1:{port}"
    clock = SimClock()
    btn = SimButton(device_id, key, air=Air(clock), board="feather_esp32s3",
                    settings={"PB_WIFI_SSID": "shop", "PB_WIFI_PASSWORD": "password1",
                              "PB_GATEWAY_URL": url},
                    wifi_networks={"shop": "password1"})
    btn.start()
    try:
        idx = [0]

        def lines(timeout: float) -> str | None:
            end = time.monotonic() + timeout
            while time.monotonic() < end:
                if idx[0] < len(btn.console):
                    idx[0] += 1
                    return btn.console[idx[0] - 1]
                time.sleep(0.02)
            return None

        res = verify.Result()
        rep = verify.read_boot_report(lines, 15)
        verify.check_report(res, rep, rec, identity.fingerprint(key), identity.fingerprint)
        # Like an installer who saw no reaction, click again: clicks that come while the
        # button wakes from its sleep after the heartbeat are not seen (a busy machine
        # stretches that wake).
        for _ in range(3):
            btn.test()
            counter, _ = verify.wait_for_press(lines, 5)
            if counter is not None:
                break
        assert counter is not None
        verify.check_heard(res, verify.db_source(db), str(db), device_id, counter, rep["paths"],
                           9, 20)
        ack = verify.wait_for_ack(lines, counter, 10)  # the gateway commits, then ACKs
        assert ack is not None and (ack.status, ack.path) == (1, "wifi"), btn.console[-5:]
    finally:
        btn.stop()
        stop(proc)
    by = {c.name: c for c in res.checks}
    assert res.ok, res.to_dict()
    assert by["key fingerprint"].status == verify.PASS
    assert by["gateway heard TEST"].status == verify.PASS
    assert [h["path"] for h in res.heard][:1] == ["wifi"]
    # A wrong key is caught by the fingerprint check.
    bad = verify.Result()
    verify.check_report(bad, rep, rec, identity.fingerprint(bytes(16)), identity.fingerprint)
    assert not bad.ok


def test_sim_over_virtual_lora_bridge(tmp_path):
    """LoRa path: a virtual bridge (real bridge firmware) on a pty that the gateway opens."""
    clock = SimClock()
    air = Air(clock, rssi=-104.0, snr=-3.0)
    vb = start_virtual_bridge(air, settings={"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9},
                              link_dir=str(tmp_path))
    proc = None
    btn = None
    try:
        device_id, key = identity.new_identity()
        Store(tmp_path / "gw" / "gateway.db").close()  # C3: only the gateway creates it
        access.register(tmp_path / "gw" / "gateway.db", registry.DeviceRecord(
            device_id, key, registry.SiteRecord("Rumah", "home", "Gg. Mawar 3", -6.9, 107.6),
            "bedroom", ["lora"], 3600, "0.1.0"))
        proc, db, _port = start_gateway(tmp_path, serial_port=vb.port_path)
        btn = SimButton(device_id, key, air=air, settings={"PB_FREQUENCY_MHZ": "921.4",
                                                          "PB_SF": 9})
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        start = len(btn.console)
        for _ in range(3):  # clicked again if they came while it woke (as above)
            btn.test()
            line = btn.wait_for_line(lambda ln: verify.PRESS_RE.search(ln) is not None, 5,
                                     start)
            if line is not None:
                break
        assert line is not None, btn.console
        counter = int(verify.PRESS_RE.search(line).group(1))
        res = verify.Result()
        verify.check_heard(res, verify.db_source(db), str(db), device_id, counter, ["lora"], 9,
                           30)
    finally:
        if btn is not None:
            btn.stop()
        if proc is not None:
            stop(proc)
        vb.stop()
    by = {c.name: c for c in res.checks}
    assert by["gateway heard TEST"].status == verify.PASS, res.to_dict()
    lora = [h for h in res.heard if h["path"] == "lora"][0]
    assert lora["rssi"] == -104.0 and lora["snr"] == -3.0
    assert lora["margin_db"] == 9.5  # -3 dB SNR is 9.5 dB above SF9's -12.5 dB floor
    assert by["LoRa uplink margin"].status == verify.PASS


def test_sim_needs_a_registry_and_one_path(tmp_path):
    r = runner.invoke(app, ["sim", "--gateway-url", "http://127.0.0.1:9"],
                      env={"PANICGW_CONFIG": str(tmp_path / "none.toml")})
    assert r.exit_code == 2 and "--gateway-db" in r.output and "--config" in r.output
    r = runner.invoke(app, ["sim", "--gateway-db", str(tmp_path / "x.db")])
    assert r.exit_code == 2 and "choose one path" in r.output
    # a DB that does not exist is refused, not created
    r = runner.invoke(app, ["sim", "--gateway-url", "http://127.0.0.1:9", "--gateway-db",
                            str(tmp_path / "x.db")])
    assert r.exit_code == 6 and "no gateway DB" in r.output
    assert not (tmp_path / "x.db").exists()


def test_unrecognised_presses_say_why(tmp_path):
    """The summary names the button and the reason for a press without a press line."""
    fw = tmp_path / "fw"
    fw.mkdir()
    (fw / "code.py").write_text("print('booting')\nraise OSError(5, 'radio not found')\n")
    crashed = SimButton(1, bytes(16), air=Air(SimClock()), firmware_dir=fw, name="sim 1")
    idle = SimButton(2, bytes(16), air=Air(SimClock()), name="sim 2")  # never started
    crashed.start()
    try:
        assert crashed.wait_for_line(lambda ln: "radio not found" in ln, 10)
        tracker = Tracker([crashed, idle])
        tracker.poll()
        out = tracker.unrecognised([Press(0, 0.0, 1.0), Press(1, 0.0, 1.0),
                                    Press(1, 2.0, 3.0)])
    finally:
        crashed.stop()
    assert out == [
        {"button": "sim 1", "missing": 1,
         "why": "the firmware crashed: OSError: [Errno 5] radio not found"},
        {"button": "sim 2", "missing": 2,
         "why": "the firmware was not running (stopped or in deep sleep)"}]


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))
