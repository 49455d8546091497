"""A button at the top of its counter space, from the refused alarm to the next one delivered.

Issue 11 point 8: at epoch 0xFFFF no RESYNC can bring a button forward; it must be rekeyed.
This journey runs it as a technician meets it, with the real programs:

- the Pi: `panicgw run` with a fresh install's config (deploy/gateway.toml.example, only paths
  and ports set), its LoRa bridge a virtual bridge running the real bridge firmware on the
  simulated air, its dispatch the real `panicgw dispatch-server` recording what it receives;
- the button: the simulated Feather running the firmware `panictool flash` writes, on the same
  air, provisioned on the Pi with `panictool provision --config` over its USB console.

The button is put at the top: its NVM epoch record says 0xFFFF and its sleep-memory record a
sequence (both written with the firmware's own record writers), while the gateway has heard it
further on in that epoch. Its alarm is then refused (no ACK), dispatch gets one Contact ID 380
`device_trouble`, and `panicgw diag` FAILs devices.counter_space naming the fix. The
technician runs exactly the commands the hint names, the first on the Pi, the second with the
button on the laptop's USB, through the real CLIs. Then the button's next alarm is ACKed
STORED, dispatch accepts it as a new incident, and diag's counter_space passes.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serial.tools import list_ports
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from drivefakes import make_circuitpy  # noqa: E402
from e2ekit import free_port, stop_group, wait_for  # noqa: E402
from test_tool_verify_branches import usb_port  # noqa: E402

from panicbutton import nvmstore  # noqa: E402
from panicbutton.counter import Counter  # noqa: E402
from panicgw.cli import app as gw_app  # noqa: E402
from panicproto import frames  # noqa: E402
from panicsim import Air, SimButton, SimClock, start_virtual_bridge  # noqa: E402
from panictool.cli import app as tool_app  # noqa: E402

EXAMPLE_CONFIG = ROOT / "deploy" / "gateway.toml.example"
BIN = Path(sys.executable).parent
TOP = nvmstore.EPOCH_MAX
SITE = ["--site-name", "Toko Maju", "--kind", "shop", "--address", "Jl. Merdeka 12, Bandung",
        "--lat", "-6.9147", "--lon", "107.6098", "--label", "kasir"]


def fresh_config(data: Path, serial_port: str, token: str, secret: str, dport: int,
                 http_port: int) -> str:
    """deploy/gateway.toml.example with only what a test must change."""
    text = EXAMPLE_CONFIG.read_text()
    for pattern, value in (
            (r'^data_dir = .*$', f'data_dir = "{data}"'),
            (r'^port = "auto".*$', f'port = "{serial_port}"'),
            (r'^host = "0\.0\.0\.0".*$', 'host = "127.0.0.1"'),
            (r'^port = 8080.*$', f"port = {http_port}"),
            (r'^port = 8765.*$', f"port = {free_port()}"),
            (r'^url = "".*$', f'url = "http://127.0.0.1:{dport}/v1/events"'),
            (r'^allow_insecure_http = false.*$', "allow_insecure_http = true"),  # on this box
            (r'^token = "".*$', f'token = "{token}"'),
            (r'^secret = "".*$', f'secret = "{secret}"')):
        text, n = re.subn(pattern, value, text, count=1, flags=re.M)
        assert n == 1, f"{EXAMPLE_CONFIG} has no line {pattern!r} any more"
    return text


class Pi:
    """`panicgw run` with its bridge on the air and a recording dispatch."""

    def __init__(self, tmp: Path, air: Air) -> None:
        self.procs: list[subprocess.Popen] = []
        self.bridge = start_virtual_bridge(air, name="gw-bridge", link_dir=str(tmp))
        self.log = (tmp / "gateway.log").open("wb")
        try:
            self._start(tmp)
        except BaseException:
            self.stop()  # nothing left running when the gateway does not come up
            raise

    def _start(self, tmp: Path) -> None:
        self.record = tmp / "dispatch.jsonl"
        token, secret = secrets.token_hex(16), secrets.token_hex(32)
        dport = free_port()
        env = dict(os.environ, PANICGW_DISPATCH_TOKEN=token, PANICGW_DISPATCH_SECRET=secret)
        self.procs.append(subprocess.Popen(
            [str(BIN / "panicgw"), "dispatch-server", "--port", str(dport), "--record",
             str(self.record), "--json"], env=env, stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL, start_new_session=True))
        self.data = tmp / "var-lib-panicgw"
        self.config = tmp / "etc-panicgw" / "gateway.toml"
        self.config.parent.mkdir()
        self.http_port = free_port()
        self.config.write_text(fresh_config(self.data, self.bridge.port_path, token, secret,
                                            dport, self.http_port))
        self.procs.append(subprocess.Popen(
            [str(BIN / "panicgw"), "run", "--config", str(self.config)], stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: self.status().get("bridge", {}).get("state") == "connected", 30,
                 "the gateway up with its bridge")

    def status(self) -> dict[str, Any]:
        try:
            port = json.loads((self.data / "runtime.json").read_text())["status_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError, KeyError):
            return {}

    def dispatched(self, device_id: int, event: str) -> list[dict[str, Any]]:
        """What dispatch recorded for the device and event: {status, verdict, body, ...}."""
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text().splitlines():
            x = json.loads(line) if line.strip() else {}
            body = x.get("body") or {}
            if body.get("event") == event and (body.get("device") or {}).get("id") == \
                    f"{device_id:08X}":
                out.append(x)
        return out

    def post(self, frame: bytes) -> tuple[int, bytes]:
        req = urllib.request.Request(f"http://127.0.0.1:{self.http_port}/v1/frames",
                                     data=frame, method="POST",
                                     headers={"Content-Type": "application/octet-stream"})
        try:
            with urllib.request.urlopen(req, timeout=10) as r:
                return r.status, r.read()
        except urllib.error.HTTPError as e:
            return e.code, e.read()

    def run(self, argv: list[str]) -> Any:
        """A command on the Pi: its default config is the gateway's (PANICGW_CONFIG stands for
        /etc/panicgw/gateway.toml)."""
        app = gw_app if argv[0] == "panicgw" else tool_app
        return CliRunner().invoke(app, argv[1:], env={"PANICGW_CONFIG": str(self.config)})

    def counter_space(self) -> dict[str, Any]:
        r = self.run(["panicgw", "diag", "--json", "--only", "counters"])
        doc = json.loads(r.output)
        found = [c for c in doc["results"] if c["id"] == "devices.counter_space"]
        assert len(found) == 1, doc
        return {**found[0], "exit_code": r.exit_code}

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)
        self.log.close()
        self.bridge.stop()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Pi, SimButton,
                                                                              Path]]:
    air = Air(SimClock(1.0), seed=11, rssi=-100.0, snr=2.0)
    pi = Pi(tmp_path, air)
    cp = make_circuitpy(tmp_path / "CIRCUITPY")
    btn = SimButton(0, bytes(16), air=air, provisioned=False, drive=cp, name="kasir")
    try:
        btn.flash()  # what `panictool flash` writes (flashing is not this journey's subject)
        port = btn.usb_console(link_dir=tmp_path).path
        # The button's USB serial port as the laptop (and the Pi) enumerate it.
        monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [
            usb_port(port, 0x239A, 0x80F2, "DF6050788B3D2A2F", "1-1.4:1.0",
                     "Feather RP2040 RFM", "CircuitPython CDC control")])
        monkeypatch.chdir(tmp_path)
        btn.start()
        yield pi, btn, cp
    finally:
        btn.stop()
        pi.stop()


def _line(btn: SimButton, pattern: str, start: int, timeout: float) -> re.Match[str] | None:
    rx = re.compile(pattern)
    ln = btn.wait_for_line(lambda s: rx.search(s) is not None, timeout, start)
    return rx.search(ln) if ln is not None else None


def test_a_button_at_the_top_of_its_counter_space_is_rekeyed_as_diag_says(world):
    pi, btn, cp = world
    # Provisioned on the Pi, registered straight into the DB `panicgw run` uses.
    r = pi.run(["panictool", "provision", *SITE, "--config", str(pi.config), "--drive",
                str(cp), "--label-dir", ".", "--no-qr", "--json"])
    assert r.exit_code == 0, r.output
    dev = int(json.loads(r.output)["device_id"])
    _, old_key = nvmstore.read_identity(btn.nvm.data)

    # The top: the NVM's epoch record says 0xFFFF and sleep memory a sequence in it (the
    # firmware's own writers); the gateway has heard this button further on in that epoch.
    nvmstore.EpochStore(btn.nvm).write(TOP)
    c = Counter(nvmstore.EpochStore(btn.nvm), btn.sleep_memory)
    c.epoch, c.seq = TOP, 5
    c._save_sleep()
    heard = frames.make_counter(TOP, 0x100)
    earlier = frames.encode_uplink(old_key, frames.Uplink(frames.HEARTBEAT, dev, heard))
    status, down = wait_for(lambda: (lambda a: a if a[0] == 200 else None)(pi.post(earlier)),
                            10, "the gateway taking the button's frames")
    assert frames.decode_downlink(down, old_key).counter == heard
    mark = len(btn.console)
    btn.reload()  # its code.py starts again, sleep memory kept: it goes on at the top
    boot = _line(btn, r'^PANIC-BUTTON (\{.*"next_counter".*\})$', mark, 20)
    assert boot is not None, btn.console[-5:]
    assert json.loads(boot.group(1))["next_counter"] == frames.make_counter(TOP, 5)

    # 1. The alarm is refused: no ACK, one trouble event at dispatch, however often it retries.
    mark = len(btn.console)
    btn.alarm()
    press = _line(btn, r"PANIC-BUTTON press: alarm counter=(\d+)", mark, 10)
    assert press is not None and int(press.group(1)) == frames.make_counter(TOP, 5)
    trouble = wait_for(lambda: pi.dispatched(dev, "device_trouble"), 60,
                       "device_trouble at dispatch")
    assert trouble[0]["verdict"] == "accepted"
    body = trouble[0]["body"]
    assert body["contact_id"]["code"] == 380 and body["site"]["name"] == "Toko Maju"
    assert f"0x{dev:08X}" in body["detail"] and "panictool rekey" in body["detail"]
    wait_for(lambda: (pi.status().get("rejections") or {}).get("counter_exhausted", 0) >= 2,
             60, "the button's retry refused too")
    assert len(pi.dispatched(dev, "device_trouble")) == 1
    assert not [ln for ln in btn.console[mark:] if ln.startswith("PANIC-BUTTON ack:")]
    assert pi.dispatched(dev, "panic") == []

    # 2. diag FAILs and names the fix.
    check = pi.counter_space()
    assert check["status"] == "FAIL" and check["exit_code"] != 0, check
    assert f"0x{dev:08X}" in check["finding"] and "refused" in check["finding"]
    commands = re.findall(r"`([^`]+)`", check["hint"])
    on_pi, at_button = commands[0], commands[1]
    assert shlex.split(on_pi)[:3] == ["panicgw", "devices", "rekey"], commands
    assert shlex.split(at_button)[:3] == ["panictool", "rekey", "--use-key"], commands

    # 3. The technician runs exactly those: the first on the Pi, the second at the button
    # (the key file carried over, then deleted).
    r = pi.run(shlex.split(on_pi))
    assert r.exit_code == 0, r.output
    assert "replay window restarted" in r.output
    mark = len(btn.console)
    r = CliRunner().invoke(tool_app, shlex.split(at_button)[1:], env={
        "PANICGW_CONFIG": str(pi.config.parent / "not-on-the-laptop.toml")})
    assert r.exit_code == 0, r.output
    assert "counter restarted" in r.output and "(key generation 2)" in r.output, r.output
    Path(shlex.split(at_button)[-1]).unlink()
    new_dev, new_key = nvmstore.read_identity(btn.nvm.data)
    assert new_dev == dev and new_key != old_key
    assert old_key.hex() not in r.output and new_key.hex() not in r.output

    # 4. The button runs again with a fresh counter; its next alarm is ACKed STORED ...
    boot = _line(btn, r'^PANIC-BUTTON (\{.*"next_counter".*\})$', mark, 20)
    assert boot is not None, btn.console[-5:]
    rep = json.loads(boot.group(1))
    assert rep["epoch"] == 1 and rep["cold_boot"] is True, rep
    mark = len(btn.console)
    btn.alarm()
    press = _line(btn, r"PANIC-BUTTON press: alarm counter=(\d+)", mark, 10)
    assert press is not None
    counter = int(press.group(1))
    assert frames.split_counter(counter)[0] == 1
    ack = _line(btn, rf"PANIC-BUTTON ack: alarm counter={counter} status=(\d)", mark, 30)
    assert ack is not None and ack.group(1) == "1", btn.console[mark:]
    # ... and dispatch accepts it as a new incident of the new key generation.
    panic = wait_for(lambda: pi.dispatched(dev, "panic"), 30, "the alarm at dispatch")
    assert panic[0]["verdict"] == "accepted" and panic[0]["status"] == 200
    assert panic[0]["body"]["incident_id"] == f"{dev:08X}-{counter:08X}-panic-g2"
    assert panic[0]["body"]["contact_id"]["code"] == 122

    # 5. diag's counter_space passes.
    check = pi.counter_space()
    assert check["status"] == "PASS", check
