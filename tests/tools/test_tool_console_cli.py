"""`panictool console` as an installer uses it, against the simulated button's USB console
(panicsim: the real button firmware, a CircuitPython-like console with friendly and raw
REPL on a pty): what the board prints reaches stdout, `--json` parses the PANIC-BUTTON boot
report, `--reload` runs code.py again, Ctrl-C ends it cleanly, an unplug is exit 4,
`--interactive` works from a terminal (a pty) and gives the terminal back, `--list` marks
CircuitPython ports."""

from __future__ import annotations

import json
import os
import re
import select
import signal
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from serial.tools import list_ports
from test_tool_verify_branches import BRIDGE, BUTTON, OTHERS
from typer.testing import CliRunner

from panicbutton import report
from panicsim import Air, SimButton, SimClock
from panictool.cli import app

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT / "tests" / "e2e"))
from e2ekit import stop_group, wait_for  # noqa: E402

PANICTOOL = ROOT / ".venv" / "bin" / "panictool"
DEV = 0x0C0FFEE5
KEY = bytes(range(16, 32))
PRESS = re.compile(r"^PANIC-BUTTON press: test counter=(\d+)$")
runner = CliRunner()


@pytest.fixture
def btn(tmp_path: Path) -> Iterator[SimButton]:
    """A LoRa button (no bridge in reach: nothing is acknowledged) with its USB console."""
    b = SimButton(DEV, KEY, air=Air(SimClock()))
    b.usb_console(link_dir=tmp_path)
    b.start()
    try:
        assert b.wait_for_line(lambda ln: ln.startswith("PANIC-BUTTON {"), 15)
        yield b
    finally:
        b.stop()


class Console:
    """`panictool console ...` as a process; its stdout lines collected by a thread."""

    def __init__(self, *args: str) -> None:
        self.proc = subprocess.Popen([str(PANICTOOL), "console", *args],
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.lines: list[str] = []
        self._t = threading.Thread(target=self._pump, daemon=True)
        self._t.start()

    def _pump(self) -> None:
        assert self.proc.stdout is not None
        for raw in iter(self.proc.stdout.readline, b""):
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    def ctrl_c(self) -> int:
        """What the installer does to stop it."""
        self.proc.send_signal(signal.SIGINT)
        return self.finish()

    def finish(self) -> int:
        rc = self.proc.wait(15)
        self._t.join(5)
        return rc

    def stderr(self) -> str:
        assert self.proc.stderr is not None
        return self.proc.stderr.read().decode()


def listening(b: SimButton) -> bool:
    """The console has the board's port open (the simulated USB CDC drops output before)."""
    return b.usb is not None and b.usb.serial.connected


def test_follow_prints_board_lines_and_ctrl_c_ends_cleanly(btn):
    first = len(btn.console)
    con = Console("--port", btn.usb.path)
    try:
        wait_for(lambda: listening(btn), 15, "the console to open the port")
        # Only one program may hold the port: a second console is told it is busy.
        r = runner.invoke(app, ["console", "--port", btn.usb.path, "--seconds", "0.2"])
        assert r.exit_code == 4 and "is busy" in r.output, r.output
        start = len(btn.console)
        btn.test()  # 5 quick presses
        line = wait_for(lambda: next((ln for ln in con.lines if PRESS.match(ln)), None), 15,
                        "the press line on stdout")
        assert con.ctrl_c() == 0, con.stderr()
    finally:
        stop_group(con.proc)
    fw_press = [ln for ln in btn.console[start:] if PRESS.match(ln)]
    assert fw_press and line == fw_press[0]  # the firmware's own line, same counter
    # Every line the firmware printed while the console listened came through, in order
    # and exactly (the CR of the CRLF stripped): a run of the firmware's own console.
    n = len(con.lines)
    assert any(btn.console[i:i + n] == con.lines for i in range(first, start + 1)), \
        (con.lines, btn.console[first:])
    # The press woke the button: its boot report is shown as the board printed it.
    reps = [report.parse(ln) for ln in con.lines if ln.startswith("PANIC-BUTTON {")]
    assert reps and reps[0]["device_id"] == DEV and reps[0]["wake"] == "pin"


def test_reload_runs_code_py_again_and_json_marks_the_boot_report(btn):
    reports = len(btn.boot_reports())
    con = Console("--port", btn.usb.path, "--reload", "--json")
    try:
        docs: list[dict[str, Any]] = []

        def boot_report() -> dict[str, Any] | None:
            docs[:] = [json.loads(ln) for ln in list(con.lines)]
            return next((d for d in docs if "boot_report" in d), None)

        doc = wait_for(boot_report, 15, "a boot report after --reload")
        assert con.ctrl_c() == 0, con.stderr()
    finally:
        stop_group(con.proc)
    text = [d["line"] for d in docs]
    # CircuitPython's soft reboot, then code.py's first line: the boot report.
    i = text.index("soft reboot")
    j = text.index("code.py output:")
    k = text.index(doc["line"])
    assert i < j < k and text[k].startswith("PANIC-BUTTON {")
    rep = doc["boot_report"]
    assert rep["device_id"] == DEV and rep["paths"] == ["lora"]
    assert rep["cold_boot"] is False  # a reload, not a power-up: sleep memory survived
    assert rep["wake"] is None  # and not one of the firmware's own wakes from deep sleep
    assert btn.usb.reloads == 1 and btn.cold_boots == 1
    assert len(btn.boot_reports()) == reports + 1 and btn.boot_reports()[-1] == rep
    assert all(isinstance(d["t"], float) for d in docs)
    assert [d for d in docs if "boot_report" in d] == [doc]  # only the report is parsed


def test_unplugged_board_is_a_serial_error(btn):
    con = Console("--port", btn.usb.path)
    try:
        wait_for(lambda: listening(btn), 15, "the console to open the port")
        btn.usb.serial.unplug()  # the USB cable is pulled
        assert con.finish() == 4
        err = con.stderr()
    finally:
        stop_group(con.proc)
    assert "was the board unplugged?" in err, err


def test_interactive_types_into_the_repl_and_gives_the_terminal_back(btn):
    master, slave = os.openpty()
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ICANON  # a cooked terminal, as a shell leaves it
    proc = subprocess.Popen([str(PANICTOOL), "console", "--port", btn.usb.path,
                             "--interactive"], stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen = bytearray()

    def screen(marker: bytes) -> bool:
        while select.select([master], [], [], 0.05)[0]:
            seen.extend(os.read(master, 4096))
        return marker in seen

    try:
        # Keys are only safe to send once the tool made the terminal raw (else the line
        # discipline would eat Ctrl-C) and holds the board's port.
        wait_for(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON and listening(btn),
                 15, "raw terminal and open port")
        os.write(master, b"\x03")  # Ctrl-C stops code.py
        wait_for(lambda: screen(b"Press any key to enter the REPL"), 10, "code.py stopped")
        assert not btn.running
        os.write(master, b"\r")
        wait_for(lambda: screen(b">>> "), 10, "the REPL prompt")
        os.write(master, b"6 * 7\r")
        wait_for(lambda: screen(b"42\r\n>>> "), 10, "the answer")
        os.write(master, b"\x1d")  # Ctrl-] quits
        assert proc.wait(15) == 0, proc.stderr.read().decode()
        after = termios.tcgetattr(slave)
    finally:
        stop_group(proc)
        os.close(master)
        os.close(slave)
    assert after == before  # the terminal is cooked again
    assert b"6 * 7" in seen  # the board echoed what was typed
    # Left at the REPL the button would send nothing, alarms included: quitting ran its
    # code.py again, and it acts on a press.
    assert btn.running and btn.usb.reloads == 1
    start = len(btn.console)
    btn.test()
    assert btn.wait_for_line(lambda ln: PRESS.match(ln) is not None, 10, start)


def test_interactive_stay_leaves_a_bench_board_at_the_prompt(btn):
    master, slave = os.openpty()
    proc = subprocess.Popen([str(PANICTOOL), "console", "--port", btn.usb.path,
                             "--interactive", "--stay"], stdin=slave, stdout=slave,
                            stderr=subprocess.PIPE, start_new_session=True)
    seen = bytearray()

    def screen(marker: bytes) -> bool:
        while select.select([master], [], [], 0.05)[0]:
            seen.extend(os.read(master, 4096))
        return marker in seen

    try:
        wait_for(lambda: not termios.tcgetattr(slave)[3] & termios.ICANON and listening(btn),
                 15, "raw terminal and open port")
        os.write(master, b"\x03")
        wait_for(lambda: screen(b"Press any key to enter the REPL"), 10, "code.py stopped")
        os.write(master, b"\x1d")
        assert proc.wait(15) == 0, proc.stderr.read().decode()
    finally:
        stop_group(proc)
        os.close(master)
        os.close(slave)
    assert not btn.running and btn.usb.reloads == 0  # as asked: still at the REPL


def test_interactive_without_a_terminal_is_refused_before_touching_the_board(btn):
    r = runner.invoke(app, ["console", "--port", btn.usb.path, "--reload", "--interactive"])
    assert r.exit_code == 4 and "--interactive needs a terminal" in r.output, r.output
    assert btn.usb.reloads == 0 and btn.usb.execs == 0  # code.py was not restarted


def test_list_marks_circuitpython_ports(monkeypatch):
    ports = OTHERS + [BUTTON] + BRIDGE
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: list(ports))
    r = runner.invoke(app, ["console", "--list"])
    assert r.exit_code == 0
    rows = {ln.split()[0]: ln for ln in r.output.splitlines()}
    assert set(rows) == {p.device for p in ports}
    for p in ports:
        marked = rows[p.device][20:].startswith(" *")
        assert marked == (p.vid == 0x239A), rows[p.device]
        assert rows[p.device].rstrip().endswith(p.description)
    r = runner.invoke(app, ["console", "--list", "--json"])
    assert r.exit_code == 0
    doc = json.loads(r.output)
    assert [d["port"] for d in doc] == [p.device for p in ports]
    by = {d["port"]: d for d in doc}
    assert by["/dev/ttyACM1"] == {"port": "/dev/ttyACM1", "vid": 0x239A, "pid": 0x80F2,
                                  "description": BUTTON.description, "circuitpython": True}
    assert by["/dev/ttyUSB0"]["circuitpython"] is False and by["/dev/ttyS0"]["vid"] is None
    monkeypatch.setattr(list_ports, "comports", lambda include_links=False: [])
    r = runner.invoke(app, ["console", "--list"])
    assert r.exit_code == 0 and r.output.strip() == "no serial ports"
    r = runner.invoke(app, ["console", "--list", "--json"])
    assert json.loads(r.output) == []
