"""Every `panictool` command that stops a button's code.py to use its raw REPL leaves it
running again on every way out: done, refused, failed, Ctrl-C in the tool, and after the
port vanished (then the hint says how to restart it). A halted button sends nothing, not
even an alarm, until someone power-cycles it, so each case ends with a TEST press the
firmware must act on.

The boards: the simulated Feather (panicsim: the real firmware/button/code.py, its USB
console a pty with a CircuitPython-like REPL, Ctrl-C really stops code.py) and, for the
two cases issue 10 reported, a real MicroPython VM on a pty running a code.py that answers
a TEST request on its console (tests/tools/mpboard.py).
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import serial
from drivefakes import make_circuitpy
from mpboard import ANSWERING_CODE, MpBoard
from typer.testing import CliRunner

from panicbutton import nvmstore
from panicgw import registry
from panicgw.store import Store
from panicimage import manifest
from panicsim import Air, SimButton, SimClock
from panictool import identity
from panictool.cli import app

runner = CliRunner()
DEV = 0x5E21A9C4
KEY = bytes(range(32, 48))
PRESS = re.compile(r"PANIC-BUTTON press: test counter=\d+")
SITE = ["--site-name", "Toko Maju", "--kind", "shop", "--address", "Jl. Merdeka 12",
        "--lat", "-6.9147", "--lon", "107.6098", "--no-qr"]


class Board:
    """A simulated button with its CIRCUITPY drive and USB console."""

    def __init__(self, tmp: Path, provisioned: bool) -> None:
        self.drive = make_circuitpy(tmp / "CIRCUITPY")
        # Sim time runs 4x: a TEST press (5 clicks and the quiet after) takes under a second.
        self.btn = SimButton(DEV, KEY, air=Air(SimClock(speed=4.0)), provisioned=provisioned,
                             drive=self.drive, name="kasir")
        self.btn.flash()  # the board runs what `panictool flash` put on its drive, nothing else
        self.usb = self.btn.usb_console(link_dir=tmp)
        self.btn.start()
        assert self.btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON "), 15)

    @property
    def port(self) -> str:
        return self.usb.path

    def booted_since(self, mark: int) -> bool:
        """code.py ran again since console line ``mark``: its boot report (or, unprovisioned,
        its "not provisioned" error report) was printed anew."""
        return self.btn.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON "), 10,
                                      mark) is not None

    def answers_test(self, within: float = 10.0, tries: int = 3) -> bool:
        """A TEST press now gets the firmware's press line: code.py runs and acts on it.
        Like an installer who saw no reaction, click again (``tries`` in all): the tool's
        soft reload may still be booting code.py when the first clicks come, and a boot does
        not see them (a busy machine stretches it). A halted board answers none."""
        start = len(self.btn.console)
        for _ in range(tries):
            self.btn.test()
            if self.btn.wait_for_line(lambda ln: PRESS.search(ln) is not None,
                                      within / tries, start) is not None:
                return True
        print("no press line; console since the press:", self.btn.console[start:],
              "console before:", self.btn.console[max(0, start - 8):start],
              "usb state:", self.usb.state)
        return False


@pytest.fixture
def boards(tmp_path: Path) -> Iterator[Callable[..., Board]]:
    made: list[Board] = []

    def make(provisioned: bool = True) -> Board:
        d = tmp_path / f"b{len(made)}"
        d.mkdir()
        made.append(Board(d, provisioned))
        return made[-1]

    yield make
    for b in made:
        b.btn.stop()


def gateway_db(tmp_path: Path, *recs: registry.DeviceRecord) -> Path:
    db = tmp_path / "gw" / "gateway.db"
    s = Store(db)  # as `panicgw run` creates it
    try:
        s.upsert_devices(list(recs))
    finally:
        s.close()
    return db


def record(device_id: int = DEV, key: bytes = KEY) -> registry.DeviceRecord:
    return registry.DeviceRecord(device_id, key, registry.SiteRecord(
        "Toko Maju", "shop", "Jl. Merdeka 12", -6.9, 107.6), "kasir", ["lora"])


def ctrl_c_after(monkeypatch: pytest.MonkeyPatch, name: str) -> None:
    """The installer presses Ctrl-C while the board sits in the raw REPL: right after the
    tool read the board's identity there."""
    real = getattr(identity, name)

    def interrupted(*a, **kw):
        real(*a, **kw)
        raise KeyboardInterrupt

    monkeypatch.setattr(identity, name, interrupted)


# -- provision -----------------------------------------------------------------------------


def test_provision_done(boards, tmp_path):
    b = boards(provisioned=False)
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(b.drive), "--port", b.port, "--label-dir",
                            str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert b.answers_test()
    # it runs as the provisioned button now: the new identity, from its own boot report
    dev = registry.read_export(tmp_path / "e.json")[0].device_id
    assert b.btn.boot_reports()[-1]["device_id"] == dev


def test_provision_refused_on_a_provisioned_board(boards, tmp_path):
    b = boards()
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(b.drive), "--port", b.port])
    assert r.exit_code == 1 and "already has device id 0x5E21A9C4" in r.output
    assert b.usb.reloads == 1 and b.answers_test()


def test_provision_registration_failure(boards, tmp_path):
    b = boards(provisioned=False)
    mark = len(b.btn.console)
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "no" / "e.json"),
                            "--drive", str(b.drive), "--port", b.port])
    assert r.exit_code == 6, r.output
    assert nvmstore.read_identity(b.btn.nvm.data) is None  # given back what it had
    # an unprovisioned button acts on no press; it runs and reports that it needs a key
    assert b.booted_since(mark) and "not_provisioned" in b.btn.console[-1]


def test_provision_ctrl_c(boards, tmp_path, monkeypatch):
    b = boards()
    ctrl_c_after(monkeypatch, "board_identity")
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(b.drive), "--port", b.port, "--force"])
    assert r.exit_code == 130, r.output  # 128 + SIGINT
    assert nvmstore.read_identity(b.btn.nvm.data) == (DEV, KEY)  # stopped before writing
    assert b.answers_test()


def test_provision_port_vanishes(boards, tmp_path, monkeypatch):
    b = boards()
    real = identity.write_identity

    def unplugged(t, *a):
        b.usb.serial.unplug()  # the cable comes out while the key is being written
        real(t, *a)

    monkeypatch.setattr(identity, "write_identity", unplugged)
    start = time.monotonic()
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(b.drive), "--port", b.port, "--json", "--force"])
    assert r.exit_code == 4, r.output
    doc = json.loads(r.output)
    assert "unplugged" in doc["error"] and "reset button" in doc["hint"]
    assert time.monotonic() - start < 30  # no hang on the vanished port
    # A battery keeps the board powered: it sits in the REPL until the hint is followed
    # (code.py is not running, so a press has nothing to act on it).
    b.usb.serial.plug()
    assert not b.btn.running and b.usb.state not in ("running", "wait_key"), b.usb.state
    monkeypatch.undo()
    hinted = re.search(r"`(panictool console [^`]+)`", doc["hint"])
    assert hinted is not None, doc["hint"]
    r = runner.invoke(app, [*hinted.group(1).split()[1:], "--port", b.port])
    assert r.exit_code == 0, r.output
    assert b.answers_test()


# -- rekey ---------------------------------------------------------------------------------


def test_rekey_done_and_refused(boards, tmp_path):
    b = boards()
    mine, other = tmp_path / "mine.key", tmp_path / "other.key"
    registry.write_key_file(mine, DEV, bytes(range(100, 116)))
    registry.write_key_file(other, 0x0BADBEEF, bytes(16))
    r = runner.invoke(app, ["rekey", "--use-key", str(other), "--port", b.port])
    assert r.exit_code == 1 and "0BADBEEF" in r.output
    assert b.answers_test()
    r = runner.invoke(app, ["rekey", "--use-key", str(mine), "--port", b.port])
    assert r.exit_code == 0, r.output
    assert b.answers_test()
    assert nvmstore.read_identity(b.btn.nvm.data) == (DEV, bytes(range(100, 116)))


def test_rekey_device_not_in_the_db(boards, tmp_path):
    b = boards()
    db = gateway_db(tmp_path, record(0x0BADBEEF))
    r = runner.invoke(app, ["rekey", "--gateway-db", str(db), "--port", b.port])
    assert r.exit_code == 6 and "not registered" in r.output
    assert b.answers_test()


# -- verify --------------------------------------------------------------------------------


def test_verify_db_lacks_the_device(boards, tmp_path):
    """Issue 10's repro: exit 6 used to leave the button halted."""
    b = boards()
    db = gateway_db(tmp_path, record(0x0BADBEEF))
    r = runner.invoke(app, ["verify", "--gateway-db", str(db), "--port", b.port])
    assert r.exit_code == 6 and "not in the registry" in r.output
    assert b.answers_test()


def test_verify_unprovisioned_and_identity_only(boards, tmp_path):
    b = boards(provisioned=False)
    registry.write_export(tmp_path / "e.json", [record()])
    mark = len(b.btn.console)
    r = runner.invoke(app, ["verify", "--port", b.port, "--export", str(tmp_path / "e.json")])
    assert r.exit_code == 1 and "no device id/key in NVM" in r.output
    assert b.booted_since(mark)
    c = boards()
    r = runner.invoke(app, ["verify", "--port", c.port, "--export", str(tmp_path / "e.json"),
                            "--no-test"])
    assert r.exit_code == 0, r.output
    assert c.answers_test()


def test_verify_ctrl_c(boards, tmp_path, monkeypatch):
    b = boards()
    ctrl_c_after(monkeypatch, "board_identity")
    r = runner.invoke(app, ["verify", "--port", b.port, "--no-test"])
    assert r.exit_code == 130, r.output
    assert b.answers_test()


# -- console and flash ---------------------------------------------------------------------


def test_console_reload(boards):
    b = boards()
    r = runner.invoke(app, ["console", "--reload", "--seconds", "0.5", "--port", b.port])
    assert r.exit_code == 0, r.output
    assert "soft reboot" in r.output and b.answers_test()


def test_flash_verification_passes_and_fails(boards, monkeypatch):
    b = boards()
    r = runner.invoke(app, ["flash", "--drive", str(b.drive), "--port", b.port])
    assert r.exit_code == 0, r.output
    assert b.answers_test()
    real = manifest.build

    def lying_build(role):
        entries = real(role)
        entries[0].sha256 = "0" * 64  # the board will not have this
        return entries

    monkeypatch.setattr(manifest, "build", lying_build)
    r = runner.invoke(app, ["flash", "--drive", str(b.drive), "--port", b.port])
    assert r.exit_code == 1 and "VERIFY FAILED" in r.output
    assert b.answers_test()


# -- a real MicroPython VM -----------------------------------------------------------------


@pytest.fixture
def vm(tmp_path: Path) -> Iterator[MpBoard]:
    b = MpBoard(tmp_path, code=ANSWERING_CODE).start()
    try:
        assert b.wait_output(b"code.py running")
        yield b
    finally:
        b.stop()


def vm_answers_test(b: MpBoard) -> bool:
    start = len(b.output)
    with serial.Serial(b.port, timeout=0.1) as s:
        s.write(b"TEST\r\n")
        return b.wait_output(b"PANIC-BUTTON press: test counter=", start, timeout=5)


def test_micropython_board_runs_after_refused_provision_and_failed_verify(vm, tmp_path):
    cp = make_circuitpy(vm.fs)
    with serial.Serial(vm.port, timeout=0.1):
        pass
    assert vm_answers_test(vm)
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(cp), "--port", vm.port, "--label-dir",
                            str(tmp_path)])
    assert r.exit_code == 0, r.output
    assert vm_answers_test(vm)
    r = runner.invoke(app, ["provision", *SITE, "--export", str(tmp_path / "e.json"),
                            "--drive", str(cp), "--port", vm.port])
    assert r.exit_code == 1 and "already has device id" in r.output
    assert vm_answers_test(vm)
    db = gateway_db(tmp_path, record(0x0BADBEEF))
    r = runner.invoke(app, ["verify", "--gateway-db", str(db), "--port", vm.port])
    assert r.exit_code == 6, r.output
    assert vm_answers_test(vm)
    assert vm.boots == 4  # a soft reboot after each command, none more
