"""End to end: provision into the gateway DB, a running `panicgw run`, simulated buttons
running the real firmware press TEST over Wi-Fi HTTP and over a virtual LoRa bridge on a pty,
and the verify checks find the frames in the gateway DB with their paths and link margin."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from panicgw import registry
from panicgw.store import Store
from panicsim import Air, SimButton, SimClock, start_virtual_bridge
from panictool import identity, verify
from panictool.cli import app

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
    assert doc["ack_paths"] == {"wifi": 3}
    s = Store(db)
    try:
        assert len(s.list_devices()) == 3
        kinds = [e["kind"].upper() for e in s.recent_events(100)]
    finally:
        s.close()
    assert kinds.count("TEST") == 3, kinds


def test_provisioned_button_test_press_heard(tmp_path):
    """The record `provision` registers is the one a button with that NVM identity uses;
    its TEST press is found by the verify checks with the Wi-Fi path. (Registered before
    the daemon starts; the sim test registers into a running one.)"""
    device_id, key = identity.new_identity()
    rec = registry.DeviceRecord(device_id, key, registry.SiteRecord(
        "Toko Maju", "shop", "Jl. Merdeka 12", -6.9, 107.6), "counter", ["wifi"], 3600, "0.1.0")
    registry.register(tmp_path / "gw" / "gateway.db", rec)
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
        btn.test()
        counter, _ = verify.wait_for_press(lines, 15)
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
        registry.register(tmp_path / "gw" / "gateway.db", registry.DeviceRecord(
            device_id, key, registry.SiteRecord("Rumah", "home", "Gg. Mawar 3", -6.9, 107.6),
            "bedroom", ["lora"], 3600, "0.1.0"))
        proc, db, _port = start_gateway(tmp_path, serial_port=vb.port_path)
        btn = SimButton(device_id, key, air=air, settings={"PB_FREQUENCY_MHZ": "921.4",
                                                          "PB_SF": 9})
        btn.start()
        assert btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        btn.test()
        line = btn.wait_for_line(lambda ln: verify.PRESS_RE.search(ln) is not None, 15)
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
    r = runner.invoke(app, ["sim", "--gateway-url", "http://127.0.0.1:9"])
    assert r.exit_code == 2 and "--gateway-db" in r.output
    r = runner.invoke(app, ["sim", "--gateway-db", str(tmp_path / "x.db")])
    assert r.exit_code == 2 and "choose one path" in r.output


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))
