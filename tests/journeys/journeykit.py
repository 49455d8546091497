"""The world the journeys walk in: the gateway Pi, the installer's laptop, the board.

The gateway is `panicgw run` with the config a fresh install has (deploy/gateway.toml.example,
only where data goes, the bridge's port, local ports and what the dispatch centre gives
changed), its LoRa bridge a virtual bridge running the real bridge firmware on the same
simulated air as the button, and dispatch the real `panicgw dispatch-server` over HTTPS
with a certificate from the precinct's own CA (the config's `ca_file`), as a real precinct
has it: plain http:// dispatch is refused by the gateway.

What the laptop sees is a real one as far as a test can make it: a mount table listing the
board's drives (the UF2 boot drive, then CIRCUITPY once CircuitPython is installed) and a
USB serial port with Adafruit's vendor id that appears when the board comes up. The board
is the simulated Feather (panicsim: it runs the code.py that `flash` wrote onto its
CIRCUITPY, its USB console a pty with a raw REPL) or a real MicroPython VM on a pty whose
filesystem is that CIRCUITPY (tests/tools/mpboard.py in hardware mode: CircuitPython's
modules as stand-ins, the real adafruit_rfm on a register-level SX127x whose antenna is on
the same air).
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
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from serial.tools import list_ports
from typer.testing import CliRunner

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "tools"))
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from drivefakes import make_circuitpy, make_uf2_drive, mount_table  # noqa: E402
from e2ekit import free_port, stop_group, wait_for  # noqa: E402
from mpboard import MpBoard  # noqa: E402
from test_tool_verify_branches import usb_port  # noqa: E402

from panicgw import access  # noqa: E402
from panicgw.cli import app as gw_app  # noqa: E402
from panicgw.store import Store  # noqa: E402
from panicsim import Air, SimButton, start_virtual_bridge  # noqa: E402
from panictool import drives  # noqa: E402
from panictool.cli import app as tool_app  # noqa: E402

DOC = ROOT / "docs" / "installing.md"
GATEWAY_DOC = ROOT / "docs" / "gateway.md"
EXAMPLE_CONFIG = ROOT / "deploy" / "gateway.toml.example"
BIN = Path(sys.executable).parent
RSSI, SNR = -104.0, -3.0  # what the gateway's bridge and a button hear of each other


# -- the docs ---------------------------------------------------------------------------------


def fenced_commands(body: str) -> list[str]:
    """The `$ ` command lines in the fenced blocks of ``body``, continuations joined,
    trailing `# comments` dropped."""
    out, fenced, buf = [], False, ""
    for line in body.splitlines():
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


def run_as(cmd: str) -> tuple[str | None, list[str], str | None]:
    """A doc's command line as (the user of its ``sudo -u USER`` or None, argv, the file its
    ``< FILE`` gives on stdin or None)."""
    argv = shlex.split(cmd)
    user = None
    if argv[:2] == ["sudo", "-u"]:
        user, argv = argv[2], argv[3:]
    stdin = None
    if len(argv) >= 2 and argv[-2] == "<":
        stdin, argv = argv[-1], argv[:-2]
    return user, argv, stdin


def doc_section(title: str, doc: Path = DOC) -> str:
    text = doc.read_text()
    return text.split(f"\n## {title}", 1)[1].split("\n## ", 1)[0]


def day_commands() -> list[str]:
    """The commands of installing.md's "The installer's day", in order."""
    return fenced_commands(doc_section("The installer's day\n"))


def doc_command(section: str, prefix: str) -> str:
    """The one `$ <prefix>...` command line of an installing.md section."""
    found = [c for c in fenced_commands(doc_section(section)) if c.startswith(prefix)]
    assert len(found) == 1, (section, prefix, found)
    return found[0]


# -- the precinct's PKI -----------------------------------------------------------------------


@dataclass
class Pki:
    ca: Path
    cert: Path
    key: Path


def make_pki(d: Path) -> Pki:
    """The precinct's CA and dispatch's server certificate for 127.0.0.1 signed by it
    (openssl CLI: the `cryptography` package is not a dependency)."""
    if shutil.which("openssl") is None:
        pytest.fail("the openssl CLI is needed to make the dispatch certificate")

    def ossl(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True, timeout=60)

    (d / "server.ext").write_text("subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    ossl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca.key", "-out", "ca.pem", "-days", "365", "-subj", "/CN=Polda test CA")
    ossl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout",
         "dispatch.key", "-out", "dispatch.csr", "-subj", "/CN=127.0.0.1")
    ossl("x509", "-req", "-in", "dispatch.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
         "-CAcreateserial", "-out", "dispatch.pem", "-days", "365", "-extfile", "server.ext")
    return Pki(d / "ca.pem", d / "dispatch.pem", d / "dispatch.key")


# -- the gateway ------------------------------------------------------------------------------


def edit_config(text: str, section: str, key: str, value: object) -> str:
    """Set ``key`` in ``[section]`` of a TOML text the way a technician does in an editor:
    that line changed in place (its comment kept), or added under the section."""
    head = text.index(f"[{section}]")
    nxt = text.find("\n[", head + 1)
    body = text[head:nxt if nxt > 0 else None]
    line = f"{key} = {json.dumps(value)}"
    new, n = re.subn(rf"(?m)^{re.escape(key)} = [^#\n]*?(\s*#.*)?$",
                     lambda m: line + (m.group(1) or ""), body, count=1)
    if not n:
        new = body.rstrip("\n") + f"\n{line}\n"
    return text[:head] + new + (text[nxt:] if nxt > 0 else "")


class Gateway:
    """The Pi: `panicgw run` with a fresh install's config, its bridge and dispatch.
    ``bridge_settings``: the bridge's own settings.toml (None: the bridge's defaults);
    ``start``: False leaves the daemon stopped, as `panicgw setup` leaves a Pi (``run()``
    starts it)."""

    def __init__(self, tmp: Path, air: Air, pki: Pki, bridge_settings: dict | None = None,
                 start: bool = True) -> None:
        self.procs: list[subprocess.Popen] = []
        self.daemon: subprocess.Popen | None = None
        self.bridge = start_virtual_bridge(air, settings=bridge_settings, name="gw-bridge",
                                           link_dir=str(tmp))
        self.record = tmp / "dispatch.jsonl"
        self.pki = pki
        token, secret = secrets.token_hex(16), secrets.token_hex(32)
        dport = free_port()
        env = dict(os.environ, PANICGW_DISPATCH_TOKEN=token, PANICGW_DISPATCH_SECRET=secret)
        self.procs.append(subprocess.Popen(
            [str(BIN / "panicgw"), "dispatch-server", "--port", str(dport), "--record",
             str(self.record), "--tls-cert", str(pki.cert), "--tls-key", str(pki.key),
             "--json"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            start_new_session=True))
        self.data = tmp / "var-lib-panicgw"
        self.config = tmp / "etc-panicgw" / "gateway.toml"
        self.config.parent.mkdir()
        self.config.write_text(self.fresh_config(token, secret, dport))
        self.config.chmod(0o600)
        self.log_path = tmp / "gateway.log"
        self.log = self.log_path.open("ab")
        try:
            if start:
                self.run()
            else:  # a fresh Pi after `sudo panicgw setup`: the empty DB exists, nothing runs
                self.data.mkdir(mode=0o700)
                Store(self.db).close()
        except BaseException:
            self.stop()  # the fixture never gets a half-made gateway to stop
            raise

    def fresh_config(self, token: str, secret: str, dport: int) -> str:
        """deploy/gateway.toml.example with only what an install changes: where data goes,
        the bridge's port (a pty here), local ports, and what the dispatch centre gave
        (an https URL, token, secret, its CA). Every other value is the fresh install's."""
        text = EXAMPLE_CONFIG.read_text()
        for section, key, value in (
                ("gateway", "data_dir", str(self.data)),
                ("serial", "port", self.bridge.port_path),
                ("http", "host", "127.0.0.1"), ("http", "port", free_port()),
                ("status", "port", free_port()),
                ("dispatch", "url", f"https://127.0.0.1:{dport}/v1/events"),
                ("dispatch", "token", token), ("dispatch", "secret", secret),
                ("dispatch", "ca_file", str(self.pki.ca))):
            text = edit_config(text, section, key, value)
        assert "allow_insecure_http = false" in text  # a real precinct's dispatch: https
        return text

    def run(self) -> None:
        """`sudo systemctl start panicgw`: the daemon on this config, until its status API
        shows the bridge connected."""
        assert self.daemon is None or self.daemon.poll() is not None, "already running"
        self.daemon = subprocess.Popen(
            [str(BIN / "panicgw"), "run", "--config", str(self.config)], stdout=self.log,
            stderr=subprocess.STDOUT, start_new_session=True)
        self.procs.append(self.daemon)

        def up() -> bool:
            if self.daemon is not None and self.daemon.poll() is not None:
                raise AssertionError(f"panicgw run exited ({self.daemon.returncode}):\n"
                                     + self.log_path.read_text()[-3000:])
            return self.status().get("bridge", {}).get("state") == "connected"

        wait_for(up, 30, "the gateway up with its bridge")

    def stop_daemon(self) -> None:
        if self.daemon is not None:
            stop_group(self.daemon)
            self.daemon = None

    @property
    def db(self) -> Path:
        return self.data / "gateway.db"

    def status(self) -> dict[str, Any]:
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

    def stored(self, device_id: int, counter: int, kind: str) -> list[tuple[str, Any, Any]]:
        """(path, RSSI, SNR) of each first reception of the device's ``kind`` event with
        that counter."""
        con = sqlite3.connect(f"file:{self.db}?mode=ro", uri=True)
        try:
            row = con.execute("SELECT id, kind FROM events WHERE device_id = ? AND "
                              "counter = ?", (device_id, counter)).fetchone()
            if row is None or row[1] != kind:
                return []
            return con.execute("SELECT path, rssi, snr FROM receptions WHERE event_id = ? "
                               "AND duplicate = 0", (row[0],)).fetchall()
        finally:
            con.close()

    def dispatched(self, device_id: int, event: str) -> list[dict[str, Any]]:
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

    def stop(self) -> None:
        for p in reversed(self.procs):
            stop_group(p)
        self.log.close()
        self.bridge.stop()


# -- the laptop -------------------------------------------------------------------------------


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

    def run(self, cmd: str, gateway: Any, on_gateway: bool = False) -> Any:
        """Run a doc's command line; ``on_gateway``: on the Pi itself, where the default
        config is the gateway's (the doc's /etc/panicgw/gateway.toml is ``gateway.config``,
        a Gateway's or an installed Pi's)."""
        user, argv, stdin = run_as(cmd)
        argv = [a.replace("/etc/panicgw/gateway.toml", str(gateway.config)) for a in argv]
        if argv[0] == "panictool":
            return CliRunner().invoke(tool_app, argv[1:], env={
                "PANICGW_CONFIG": str(gateway.config) if on_gateway else self.no_gateway})
        assert argv[0] == "panicgw", cmd
        # On the gateway its admin's commands find the DB from the default config, which
        # PANICGW_CONFIG points at (/etc/panicgw/gateway.toml on a real Pi). `sudo -u panicgw`
        # is the service user the gateway's files belong to: here the test's own user, who
        # owns them (tests/gateway/test_import_permissions.py runs it as another); the
        # admin's shell reads the `< FILE` it gives on stdin.
        assert user in (None, access.SERVICE_USER), cmd
        data = (self.home / stdin).read_bytes() if stdin is not None else None
        return CliRunner().invoke(gw_app, argv[1:], input=data,
                                  env={"PANICGW_CONFIG": str(gateway.config)})


# -- the board --------------------------------------------------------------------------------


class Board:
    """A blank board in its UF2 bootloader. Once a valid RP2040 .uf2 lands on the boot drive
    it "installs CircuitPython": the boot drive goes, CIRCUITPY (with CircuitPython's own
    hello-world code.py) appears, and so does its USB serial console."""

    def __init__(self, kind: str, tmp: Path, laptop: Laptop, air: Air,
                 name: str = "kasir") -> None:
        self.kind, self.tmp, self.laptop, self.air, self.name = kind, tmp, laptop, air, name
        self.boot = make_uf2_drive(tmp / "RPI-RP2")
        mount_table(laptop.mounts, [self.boot])
        self.btn: SimButton | None = None
        self.vm: MpBoard | None = None
        self.cp: Path | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._t = threading.Thread(target=self._bootloader, daemon=True)
        self._t.start()

    def _bootloader(self) -> None:
        try:
            while not self._stop.is_set():
                for f in self.boot.glob("*.uf2"):
                    data = f.read_bytes()
                    if len(data) >= 512 and len(data) == 512 * int.from_bytes(
                            data[24:28], "little") and drives.uf2_family(data) == "RP2040":
                        shutil.rmtree(self.boot)  # the bootloader resets: its drive goes
                        self._come_up()
                        return
                self._stop.wait(0.05)  # the drive is polled as USB mass storage is
        except BaseException as e:  # shown by the test, not lost in a thread
            self.error = e

    def _come_up(self) -> None:
        if self.kind == "sim":
            cp = make_circuitpy(self.tmp / "CIRCUITPY")
            (cp / "code.py").write_text('print("Hello World!")\n')
            # The board runs whatever code.py and glue `flash` put on its drive.
            self.btn = SimButton(0, bytes(16), air=self.air, provisioned=False, drive=cp,
                                 firmware_dir=cp, name=self.name)
            port = self.btn.usb_console(link_dir=self.tmp).path
            self.btn.start()
        else:
            (self.tmp / "mp").mkdir()
            self.vm = MpBoard(self.tmp / "mp", code='print("Hello World!")\n', air=self.air,
                              name=self.name, fs_name="CIRCUITPY")
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
        return self.vm.lines()

    def wait_line(self, pred, timeout: float, start: int = 0) -> str | None:
        if self.btn is not None:
            return self.btn.wait_for_line(pred, timeout, start)
        assert self.vm is not None
        return self.vm.wait_line(pred, timeout, start)

    def press_test(self) -> None:
        """A person presses the TEST pattern (5 quick presses)."""
        if self.btn is not None:
            self.btn.test()
        else:
            assert self.vm is not None
            self.vm.test()

    def press_alarm(self) -> None:
        if self.btn is not None:
            self.btn.alarm()
        else:
            assert self.vm is not None
            self.vm.press(2.0)

    def on_air(self) -> list[bytes]:
        """The packets this board's radio put on air, oldest first."""
        if self.btn is not None:
            assert self.btn.radio is not None
            return [p for _t, _sf, p in self.btn.radio.sent]
        assert self.vm is not None and self.vm.link is not None
        return [p for _t, _sf, p in self.vm.link.sent]

    def stop(self) -> None:
        self._stop.set()
        self._t.join(2)
        if self.btn is not None:
            self.btn.stop()
        if self.vm is not None:
            self.vm.stop()

