"""`panicgw diag` beside a running `panicgw run` (A's daemon): live state from its status API,
the serial port left to the daemon, and the CLI's real exit codes in a subprocess."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from diagkit import Gateway, by_id


def _run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    code = "from panicgw.cli import app; app()"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          timeout=60)


@contextlib.contextmanager
def running_daemon(gw: Gateway) -> Iterator[subprocess.Popen[bytes]]:
    cfg = gw.write_config()
    gw.store.close()  # the daemon owns the DB now; we read it read-only
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(
        [sys.executable, "-c", "from panicgw.cli import app; app()", "run", "-c", str(cfg)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    runtime = gw.data / "runtime.json"
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            if proc.poll() is not None:
                pytest.fail(f"panicgw run exited: {proc.stderr.read().decode()[-2000:]}")
            if runtime.exists() and _bridge_connected(gw):
                break
            time.sleep(0.1)
        else:
            pytest.fail("daemon did not come up with the bridge connected")
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.fixture
def daemon(gw: Gateway) -> Iterator[subprocess.Popen[bytes]]:
    with running_daemon(gw) as proc:
        yield proc


def _bridge_connected(gw: Gateway) -> bool:
    import urllib.request

    try:
        info = json.loads((gw.data / "runtime.json").read_text())
        url = f"http://127.0.0.1:{info['status_port']}/v1/status"
        with urllib.request.urlopen(url, timeout=1) as r:
            st = json.loads(r.read())
        return st.get("bridge", {}).get("state") == "connected" and bool(
            st["bridge"].get("bridge"))
    except (OSError, ValueError, KeyError):
        return False


def test_running_gateway_all_pass_then_bridge_unplugged(gw: Gateway, daemon) -> None:
    res = _run_cli("diag", "-c", str(gw.config), "--json")
    doc = json.loads(res.stdout)
    r = by_id(doc)
    assert doc["daemon_running"] is True
    assert r["daemon"]["status"] == "PASS" and "running" in r["daemon"]["finding"]
    assert r["http"]["status"] == "PASS"
    assert r["bridge.present"]["status"] == "PASS" and "connected" in r["bridge.present"]["finding"]
    assert r["bridge.radio"]["status"] == "PASS"
    bad = {x["id"]: x["finding"] for x in doc["results"] if x["status"] in ("WARN", "FAIL")}
    assert not bad, bad
    assert res.returncode == 0

    # Human output: a table, colour-free when piped, with the verdicts.
    res = _run_cli("diag", "-c", str(gw.config))
    assert "daemon running" in res.stdout and "PASS" in res.stdout
    assert res.returncode == 0

    gw.bridge.unplug()
    end = time.monotonic() + 20
    while time.monotonic() < end and _bridge_connected(gw):
        time.sleep(0.1)
    res = _run_cli("diag", "-c", str(gw.config), "--json")
    r = by_id(json.loads(res.stdout))
    assert r["bridge.present"]["status"] == "FAIL", r["bridge.present"]
    assert "USB cable" in r["bridge.present"]["hint"]
    assert res.returncode == 2


def test_running_gateway_sets_a_wrong_bridge_radio(tmp_path: Path, loop_thread,
                                                   certs) -> None:
    """A bridge on other settings gets the gateway's with CONFIG: bridge.radio passes."""
    gw = Gateway(tmp_path, loop_thread, certs)
    try:
        gw.bridge.status["radio"]["sf"] = 8
        with running_daemon(gw):
            res = _run_cli("diag", "-c", str(gw.config), "--json")
        r = by_id(json.loads(res.stdout))["bridge.radio"]
        assert r["status"] == "PASS", r
        assert gw.bridge.status["radio"]["sf"] == 9
    finally:
        gw.close()


def test_running_gateway_bridge_refuses_config(tmp_path: Path, loop_thread, certs) -> None:
    """The bridge refuses the settings: diag FAILs with the bridge's reason and names the
    setting and the restart that fix it."""
    gw = Gateway(tmp_path, loop_thread, certs)
    try:
        gw.bridge.config_refusal = "frequency_mhz must be 240-960 (RFM95)"
        with running_daemon(gw):
            res = _run_cli("diag", "-c", str(gw.config), "--json")
        r = by_id(json.loads(res.stdout))["bridge.radio"]
        assert r["status"] == "FAIL" and "refused" in r["finding"]
        assert "frequency_mhz must be 240-960" in r["finding"]
        assert "[serial]" in r["hint"] and "systemctl restart panicgw" in r["hint"]
        assert res.returncode == 2
    finally:
        gw.close()


def test_bad_tag_storm_names_the_device_and_the_command_that_fixes_it(gw: Gateway,
                                                                      daemon) -> None:
    """Issue 10.4: a button with another key than the gateway's (an old export re-imported,
    a half-done rekey): diag names the device, its key generation and the commands."""
    from diagkit import DEV

    from panicproto import frames

    wrong = bytes(range(100, 116))
    for n in range(25):
        gw.bridge.rx(frames.encode_uplink(wrong, frames.Uplink(frames.ALARM, DEV,
                                                               0x00020001 + n)), -100, 5.0)
    info = json.loads((gw.data / "runtime.json").read_text())

    def rejected() -> int:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{info['status_port']}/v1/status",
                                    timeout=2) as r:
            return json.loads(r.read())["rejections"].get("bad_tag", 0)

    end = time.monotonic() + 20
    while time.monotonic() < end and rejected() < 25:
        time.sleep(0.05)
    res = _run_cli("diag", "-c", str(gw.config), "--json")
    r = by_id(json.loads(res.stdout))["rejections"]
    assert r["status"] == "WARN" and "bad_tag" in r["finding"]
    assert r["data"]["devices"] == {f"{DEV:08X}": {"bad_tag": 25}}
    assert f"panicgw devices rekey {DEV:08X} --key-file {DEV:08X}.key" in r["hint"]
    assert f"panictool rekey --use-key {DEV:08X}.key" in r["hint"]
    assert "key generation 1" in r["hint"] and "provision --force" in r["hint"]
