"""The installer's day as docs/installing.md writes it, executed command for command.

The commands are read from the doc's "The installer's day" section (not copied here), so
the doc and this journey cannot drift apart, and run through the real CLIs in the order the
doc gives them, with no option added:

    laptop:   panictool flash --uf2 <the doc's .uf2>   (blank board in its bootloader)
    laptop:   panictool provision ... --export today.json
    gateway:  panicgw devices import today.json          (default config: PANICGW_CONFIG)
    laptop:   panictool verify

What the laptop sees is a real one as far as a test can make it: a mount table listing the
board's drives (the UF2 boot drive, then CIRCUITPY once "CircuitPython" is installed), and
a USB serial port with Adafruit's vendor id that appears when the board comes up. The board
is either the simulated Feather (panicsim: it runs the code.py that `flash` wrote onto its
CIRCUITPY, its USB console a pty with a raw REPL) or a real MicroPython VM on a pty whose
filesystem is that CIRCUITPY. The gateway is `panicgw run` with the config a fresh install
has (deploy/gateway.toml.example, only paths and ports set for the test), its LoRa bridge a
virtual bridge running the real bridge firmware on the same simulated air as the button,
and its dispatch the real `panicgw dispatch-server`. The day ends when dispatch holds the
TEST and the button still acts on a press.

Steps that need another branch's half of a contract (issue 10: fw prints the C2 ACK line,
gwops makes `panicgw devices` find the DB from the default config, fw's MicroPython stand-ins
for the hardware modules) are not skipped: each such step is run as the doc says, checked,
and when it falls short for exactly that reason the reason is recorded, the journey goes on
where it can, and the test ends as an expected failure naming every such step. Any other
failure fails the test.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
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
from drivefakes import make_circuitpy, make_uf2_drive, mount_table, uf2_image  # noqa: E402
from e2ekit import free_port, stop_group, wait_for  # noqa: E402
from mpboard import MpBoard  # noqa: E402
from test_tool_verify_branches import usb_port  # noqa: E402

from panicgw import access, registry  # noqa: E402
from panicgw.cli import app as gw_app  # noqa: E402
from panicsim import Air, SimButton, SimClock, start_virtual_bridge  # noqa: E402
from panictool import drives  # noqa: E402
from panictool.cli import app as tool_app  # noqa: E402

DOC = ROOT / "docs" / "installing.md"
EXAMPLE_CONFIG = ROOT / "deploy" / "gateway.toml.example"
BIN = Path(sys.executable).parent
RP2040 = 0xE48BFF56  # the UF2 family id of the doc's Feather RP2040 image
RSSI, SNR = -104.0, -3.0


def day_commands() -> list[str]:
    """The `$ ` command lines of the doc's "The installer's day" section, in order."""
    text = DOC.read_text()
    section = text.split("\n## The installer's day\n", 1)[1].split("\n## ", 1)[0]
    out, fenced, buf = [], False, ""
    for line in section.splitlines():
        if line.startswith("```"):
            fenced = not fenced
            continue
        if not fenced:
            continue
        if buf:
            buf += " " + line.strip()
        elif line.startswith("$ "):
            buf = line[2:].strip()
        else:
            continue
        if buf.endswith("\\"):
            buf = buf[:-1].rstrip()
            continue
        out.append(buf.split(" #")[0].strip())
        buf = ""
    return out


def doc_command(section: str, prefix: str) -> str:
    """The one `$ <prefix>...` command line of a doc section (e.g. "2. Provision")."""
    text = DOC.read_text()
    body = text.split(f"\n## {section}", 1)[1].split("\n## ", 1)[0]
    found = [ln[2:].split(" #")[0].strip() for ln in body.splitlines()
             if ln.startswith(f"$ {prefix}")]
    assert len(found) == 1, (section, prefix, found)
    return found[0]


def test_the_day_is_three_commands_on_the_laptop():
    cmds = day_commands()
    words = [" ".join(shlex.split(c)[:2 if c.startswith("panictool") else 3]) for c in cmds]
    assert words == ["panictool flash", "panictool provision", "panicgw devices import",
                     "panictool verify"], cmds
    assert sum(w.startswith("panictool") for w in words) == 3
    assert "3 commands on your laptop" in DOC.read_text()


# -- the world: the gateway Pi, the laptop, the board ------------------------------------------


class Gateway:
    """The Pi: `panicgw run` with a fresh install's config, its bridge and dispatch."""

    def __init__(self, tmp: Path, air: Air) -> None:
        self.procs: list[subprocess.Popen] = []
        self.bridge = start_virtual_bridge(air, name="gw-bridge", link_dir=str(tmp))
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
        self.config.write_text(fresh_config(self.data, self.bridge.port_path, token, secret,
                                            dport))
        self.log = (tmp / "gateway.log").open("wb")
        self.procs.append(subprocess.Popen(
            [str(BIN / "panicgw"), "run", "--config", str(self.config)], stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True))
        wait_for(lambda: self._status().get("bridge", {}).get("state") == "connected", 30,
                 "the gateway up with its bridge")

    @property
    def db(self) -> Path:
        return self.data / "gateway.db"

    def _status(self) -> dict[str, Any]:
        try:
            port = json.loads((self.data / "runtime.json").read_text())["status_port"]
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/status", timeout=2) as r:
                return json.loads(r.read())
        except (OSError, ValueError, KeyError):
            return {}

    def knows(self, device_id: int) -> bool:
        s = access.open_db(self.db, readonly=True)
        try:
            return s.get_device(device_id) is not None
        finally:
            s.close()

    def stored_test(self, device_id: int, counter: int) -> list[tuple[str, Any, Any]]:
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT id, kind FROM events WHERE device_id = ? AND "
                              "counter = ?", (device_id, counter)).fetchone()
            if row is None or row[1] != "test":
                return []
            return con.execute("SELECT path, rssi, snr FROM receptions WHERE event_id = ? "
                               "AND duplicate = 0", (row[0],)).fetchall()
        finally:
            con.close()

    def dispatched_tests(self, device_id: int) -> list[dict[str, Any]]:
        if not self.record.exists():
            return []
        out = []
        for line in self.record.read_text().splitlines():
            x = json.loads(line) if line.strip() else {}
            body = x.get("body") or {}
            if body.get("event") == "test" and (body.get("device") or {}).get("id") == \
                    f"{device_id:08X}":
                out.append(x)
        return out

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)
        self.log.close()
        self.bridge.stop()


def fresh_config(data: Path, serial_port: str, token: str, secret: str, dport: int) -> str:
    """deploy/gateway.toml.example with only what a test must change: where data goes, the
    bridge's port, local ports, and dispatch. Every other value is the fresh install's."""
    text = EXAMPLE_CONFIG.read_text()
    for pattern, value in (
            (r'^data_dir = .*$', f'data_dir = "{data}"'),
            (r'^port = "auto".*$', f'port = "{serial_port}"'),
            (r'^host = "0\.0\.0\.0".*$', 'host = "127.0.0.1"'),
            (r'^port = 8080.*$', f"port = {free_port()}"),
            (r'^port = 8765.*$', f"port = {free_port()}"),
            (r'^url = "".*$', f'url = "http://127.0.0.1:{dport}/v1/events"'),
            (r'^token = "".*$', f'token = "{token}"'),
            (r'^secret = "".*$', f'secret = "{secret}"')):
        text, n = re.subn(pattern, value, text, count=1, flags=re.M)
        assert n == 1, f"{EXAMPLE_CONFIG} has no line {pattern!r} any more"
    return text


class Laptop:
    """What panictool finds on the installer's laptop: the mount table and USB ports."""

    def __init__(self, tmp: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.home = tmp / "laptop"
        self.home.mkdir()
        self.mounts = tmp / "mounts"
        mount_table(self.mounts, [])
        self.ports: list[Any] = []
        monkeypatch.setattr(drives, "MOUNTS", self.mounts)
        monkeypatch.setattr(list_ports, "comports", lambda include_links=False:
                            list(self.ports))
        monkeypatch.chdir(self.home)
        self.no_gateway = str(tmp / "no-such" / "gateway.toml")  # not a gateway machine

    def run(self, cmd: str, gateway: Gateway, on_gateway: bool = False) -> Any:
        """Run a doc's command line; ``on_gateway``: on the Pi itself, where the default
        config is the gateway's (the doc's /etc/panicgw/gateway.toml is that file)."""
        argv = [a.replace("/etc/panicgw/gateway.toml", str(gateway.config))
                for a in shlex.split(cmd)]
        if argv[0] == "panictool":
            return CliRunner().invoke(tool_app, argv[1:], env={
                "PANICGW_CONFIG": str(gateway.config) if on_gateway else self.no_gateway})
        assert argv[0] == "panicgw", cmd
        # On the gateway its admin's commands find the DB from the default config, which
        # PANICGW_CONFIG points at (/etc/panicgw/gateway.toml on a real Pi).
        return CliRunner().invoke(gw_app, argv[1:], env={"PANICGW_CONFIG": str(gateway.config)})


class Board:
    """A blank board in its UF2 bootloader. Once the doc's .uf2 lands on the boot drive
    it "installs CircuitPython": the boot drive goes, CIRCUITPY (with CircuitPython's
    own hello-world code.py) appears, and so does its USB serial console."""

    def __init__(self, kind: str, tmp: Path, laptop: Laptop, air: Air) -> None:
        self.kind, self.tmp, self.laptop, self.air = kind, tmp, laptop, air
        self.boot = make_uf2_drive(tmp / "RPI-RP2")
        mount_table(laptop.mounts, [self.boot])
        self.btn: SimButton | None = None
        self.vm: MpBoard | None = None
        self.cp: Path | None = None
        self.error: BaseException | None = None
        self._t = threading.Thread(target=self._bootloader, daemon=True)
        self._t.start()

    def _bootloader(self) -> None:
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                for f in self.boot.glob("*.uf2"):
                    data = f.read_bytes()
                    if len(data) >= 512 and len(data) == 512 * int.from_bytes(
                            data[24:28], "little") and drives.uf2_family(data) == "RP2040":
                        shutil.rmtree(self.boot)  # the bootloader resets: its drive goes
                        self._come_up()
                        return
                time.sleep(0.05)
        except BaseException as e:  # shown by the test, not lost in a thread
            self.error = e

    def _come_up(self) -> None:
        if self.kind == "sim":
            cp = make_circuitpy(self.tmp / "CIRCUITPY")
            (cp / "code.py").write_text('print("Hello World!")\n')
            # The board runs whatever code.py and glue `flash` put on its drive.
            self.btn = SimButton(0, bytes(16), air=self.air, provisioned=False, drive=cp,
                                 firmware_dir=cp, name="kasir")
            port = self.btn.usb_console(link_dir=self.tmp).path
            self.btn.start()
        else:
            (self.tmp / "mp").mkdir()
            self.vm = MpBoard(self.tmp / "mp", code='print("Hello World!")\n')
            cp = make_circuitpy(self.vm.fs)
            port = self.vm.start().port
        self.cp = cp
        self.laptop.ports[:] = [usb_port(port, 0x239A, 0x80F2, "DF6050788B3D2A2F",
                                         "1-1.4:1.0", "Feather RP2040 RFM",
                                         "CircuitPython CDC control")]
        mount_table(self.laptop.mounts, [cp])

    def console(self) -> list[str]:
        if self.btn is not None:
            return list(self.btn.console)
        assert self.vm is not None
        return bytes(self.vm.output).decode("utf-8", "replace").replace("\r", "").split("\n")

    def stop(self) -> None:
        self._t.join(1)
        if self.btn is not None:
            self.btn.stop()
        if self.vm is not None:
            self.vm.stop()


@pytest.fixture
def world(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
          ) -> Iterator[tuple[Laptop, Gateway, Air, Path]]:
    laptop = Laptop(tmp_path, monkeypatch)
    air = Air(SimClock(1.0), seed=10, rssi=RSSI, snr=SNR)
    gw = Gateway(tmp_path, air)
    try:
        yield laptop, gw, air, tmp_path
    finally:
        gw.stop()


# -- the day -----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sim", "micropython"])
def test_installer_day_as_the_doc_writes_it(world, kind):
    laptop, gw, air, tmp = world
    flash, provision, import_, verify = day_commands()
    pending: list[str] = []
    uf2_name = shlex.split(flash)[shlex.split(flash).index("--uf2") + 1]
    (laptop.home / uf2_name).write_bytes(uf2_image(RP2040))
    board = Board(kind, tmp, laptop, air)
    try:
        # 1. flash: CircuitPython and the firmware in one run, verified on the board.
        r = laptop.run(flash, gw)
        assert board.error is None, board.error
        assert r.exit_code == 0, r.output
        assert "waiting for CIRCUITPY (up to 90 s)" in r.output
        assert re.search(r"verified over \S+: all \d+ files match", r.output), r.output
        assert board.cp is not None and (board.cp / "code.py").read_text() == \
            (ROOT / "firmware" / "button" / "code.py").read_text()

        # 2. provision: identity into NVM, settings onto CIRCUITPY, the site into today.json.
        r = laptop.run(provision, gw)
        assert r.exit_code == 0, r.output
        export = laptop.home / "today.json"
        recs = registry.read_export(export)
        assert len(recs) == 1 and recs[0].site.name == "Toko Maju"
        dev = recs[0].device_id
        assert f"next: on the gateway `{import_}`, then here `{verify}`" in r.output
        assert (laptop.home / f"panic-button-{dev:08X}.svg").is_file()

        # 3. On the gateway: the import lands in the DB the running daemon uses.
        r = laptop.run(import_, gw)
        assert r.exit_code == 0, r.output
        if not gw.knows(dev):
            stray = list(laptop.home.glob("**/gateway.db"))
            pending.append(
                f"step 3 `{import_}`: the device did not reach the gateway's DB {gw.db} "
                f"(it went to {', '.join(map(str, stray)) or 'nowhere'}): `panicgw devices` "
                "does not yet find the DB from the default config (C3, gwops branch)")
            r = CliRunner().invoke(gw_app, ["devices", "import", "--config", str(gw.config),
                                            str(export)])
            assert r.exit_code == 0 and gw.knows(dev), r.output

        # 4. verify: nobody touches the button; the signed ACK is the proof.
        mark = len(board.console())
        r = laptop.run(verify, gw)
        out = r.output
        if kind == "micropython" and "code.py stopped before its boot report" in out:
            crash = re.search(r"code\.py stopped before its boot report: (.*)", out)
            assert r.exit_code == 1 and crash is not None, out
            pending.append(
                f"step 4 `{verify}` on the MicroPython VM: the flashed code.py stops at "
                f"`{crash.group(1).strip()}`: the VM has no stand-ins for CircuitPython's "
                "hardware modules (fw's issue-10 point-1 gate) nor a radio or network path "
                "to the gateway, so no TEST can leave it")
            pytest.xfail("; ".join(pending))
        m = re.search(r"TEST sent: counter (\d+)", out)
        assert m, out
        counter = int(m.group(1))
        acks = [ln for ln in board.console()[mark:]
                if ln.startswith(f"PANIC-BUTTON ack: test counter={counter} ")]
        if r.exit_code != 0 and acks and " down=" not in acks[0]:
            assert "FAIL TEST confirmed" in out and "no downlink to check" in out, out
            pending.append(
                f"step 4 `{verify}`: the button's ACK line {acks[0]!r} has no C2 fields "
                "(rssi/snr/sf/down), so verify cannot check the gateway's signature and "
                "rightly fails (fw branch: contract C2)")
        else:
            assert r.exit_code == 0, out
            assert "PASS gateway ACK: STORED via lora, signed with this button's key" in out
            assert "PASS LoRa downlink margin" in out and "RESULT: PASS" in out

        # 5. The gateway stored the TEST (heard on LoRa, the air's RSSI/SNR) ...
        heard = wait_for(lambda: gw.stored_test(dev, counter), 10, "the TEST in the DB")
        assert heard == [("lora", RSSI, SNR)], heard
        # ... and dispatch received it as a manual test, marked as one.
        got = wait_for(lambda: gw.dispatched_tests(dev), 20, "the TEST at dispatch")
        body = got[0]["body"]
        assert got[0]["status"] == 200 and got[0]["verdict"] == "accepted", got[0]
        assert body["contact_id"]["code"] == 601 and body["test"] is True, body
        assert body["site"]["name"] == "Toko Maju" and body["device"]["label"] == "counter"

        # 6. The button is left running its firmware: a press is acted on.
        assert board.btn is not None
        start = len(board.btn.console)
        board.btn.test()
        assert board.btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON press: test"),
                                       10, start), board.btn.console[-5:]
    finally:
        board.stop()
    if pending:
        pytest.xfail("; ".join(pending))


def test_on_the_gateway_itself_three_commands_in_all(world):
    """The doc's other way: the button on the Pi's USB. flash as on the laptop, then
    `provision ... --config /etc/panicgw/gateway.toml` registers straight into the DB that
    the running `panicgw run --config` uses (no import), and `verify --config` passes with
    the gateway's view; a plain `panictool verify` there finds the same DB by itself."""
    laptop, gw, air, tmp = world
    flash = day_commands()[0]
    provision = doc_command("2. Provision", "panictool provision")
    verify = doc_command("3. Verify", "panictool verify --config")
    assert "--config /etc/panicgw/gateway.toml" in provision
    uf2_name = shlex.split(flash)[shlex.split(flash).index("--uf2") + 1]
    (laptop.home / uf2_name).write_bytes(uf2_image(RP2040))
    board = Board("sim", tmp, laptop, air)
    try:
        r = laptop.run(flash, gw, on_gateway=True)
        assert r.exit_code == 0, r.output
        r = laptop.run(provision, gw, on_gateway=True)
        assert r.exit_code == 0, r.output
        m = re.search(r"device 0x([0-9A-F]{8}) provisioned", r.output)
        assert m and f"registered in the gateway DB {gw.db}" in r.output, r.output
        dev = int(m.group(1), 16)
        assert gw.knows(dev)
        assert "next: panictool verify  (" in r.output  # nothing to import
        assert not list(tmp.glob("**/panicgw-data"))  # no second, unread registry made
        r = laptop.run(verify, gw, on_gateway=True)
        out = r.output
        assert r.exit_code == 0, out
        for check in ("registered: 0x", "key fingerprint", "TEST sent", "gateway heard TEST: "
                      "stored as test via lora", "LoRa uplink margin"):
            assert f"PASS {check}" in out, (check, out)
        counter = int(re.search(r"TEST sent: counter (\d+)", out).group(1))
        assert gw.stored_test(dev, counter) == [("lora", RSSI, SNR)]
        r = laptop.run("panictool verify", gw, on_gateway=True)
        assert r.exit_code == 0 and "PASS gateway heard TEST" in r.output, r.output
    finally:
        board.stop()
