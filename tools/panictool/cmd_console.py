"""`panictool console`: a serial monitor for a button or bridge console (CircuitPython REPL).

Lines go to stdout as they arrive (with ``--json``, one JSON object per line with the
time and a parsed boot report). Plain mode only listens and stops on Ctrl-C or after
``--seconds``; ``--interactive`` sends keystrokes (Ctrl-C included) to the board's REPL.
A board left at a REPL prompt when ``--interactive`` ends is soft-rebooted, so the button
runs its code.py again (``--stay`` keeps it at the prompt, for a bench board).
"""

from __future__ import annotations

import json
import os
import select
import sys
import termios
import time
import tty

import typer
from serial.tools import list_ports

from panicbutton import report
from panicgw.ports import ADAFRUIT_VID
from panictool import common
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

EPILOG = """\
Examples:

  panictool console                         # follow the one CircuitPython board's console
  panictool console --reload                # restart code.py first, to see the boot report
  panictool console --json --seconds 30     # 30 s of JSON lines for a script
  panictool console --interactive           # type into the REPL; Ctrl-] quits
                                            # (code.py runs again; --stay keeps the REPL)
  panictool console --list                  # serial ports, CircuitPython ones marked

Exit codes: 0 done; 4 serial problem (no port, busy, no permission, unplugged).
"""


def console(
    port: str | None = typer.Option(None, "--port", help="Serial port (default: the USB "
                                    "device with vendor 0x239A)."),
    reload: bool = typer.Option(False, "--reload", help="Restart code.py first (Ctrl-C, "
                                "Ctrl-D) to see the boot report."),
    seconds: float = typer.Option(0.0, "--seconds", help="Stop after this many seconds "
                                  "(0: until Ctrl-C)."),
    interactive: bool = typer.Option(False, "--interactive", help="Send your keystrokes to "
                                     "the board (raw terminal); Ctrl-] quits."),
    stay: bool = typer.Option(False, "--stay", help="With --interactive: leave the board at "
                              "the REPL prompt when you quit (it sends nothing until reset)."),
    list_only: bool = typer.Option(False, "--list", help="List serial ports and exit."),
    as_json: bool = typer.Option(False, "--json", help="One JSON object per console line."),
) -> None:
    """Show a board's serial console; mark PANIC-BUTTON boot reports."""
    if list_only:
        ports = [{"port": p.device, "vid": p.vid, "pid": p.pid, "description": p.description,
                  "circuitpython": p.vid == ADAFRUIT_VID} for p in list_ports.comports()]
        if as_json:
            typer.echo(json.dumps(ports))
        else:
            for p in ports:
                typer.echo(f"{p['port']:20} {'*' if p['circuitpython'] else ' '} "
                           f"{p['description']}")
            if not ports:
                typer.echo("no serial ports")
        return
    try:
        if interactive and not _stdin_is_terminal():
            # Before opening the port: --reload would otherwise restart the board first.
            raise TransportError("--interactive needs a terminal", "run it in a terminal window")
        used = port or auto_port()
        with SerialTransport(used) as t:
            if reload:
                t.soft_reboot(run_code=True)
            if interactive:
                halted = _interactive(t)
                # code.py stopped at the user's Ctrl-C: run it again on the way out, unless
                # asked to stay (the session's close() restarts it when halted).
                t.halted = t.answered = halted and not stay
            else:
                _follow(t, seconds, as_json)
    except TransportError as e:
        common.fail(common.SERIAL, str(e), e.hint, as_json)
    except KeyboardInterrupt:
        pass


def _follow(t: SerialTransport, seconds: float, as_json: bool) -> None:
    end = time.monotonic() + seconds if seconds > 0 else None
    buf = b""
    while end is None or time.monotonic() < end:
        buf += t.read_console(0.1)
        while b"\n" in buf:
            raw, buf = buf.split(b"\n", 1)
            line = raw.decode("utf-8", "replace").rstrip("\r")
            if as_json:
                doc = {"t": round(time.time(), 3), "line": line}
                rep = report.parse(line)
                if rep is not None:
                    doc["boot_report"] = rep
                typer.echo(json.dumps(doc))
            else:
                typer.echo(line)
            sys.stdout.flush()
    if buf and not as_json:
        typer.echo(buf.decode("utf-8", "replace"))


def _stdin_is_terminal() -> bool:
    try:
        return os.isatty(sys.stdin.fileno())
    except (OSError, ValueError):  # closed, or no file descriptor at all (in-memory stdin)
        return False


AT_PROMPT = (b">>> ", b"Use CTRL-D to reload.\r\n", b"raw REPL; CTRL-B to exit\r\n>",
             b"\x04>")


def _interactive(t: SerialTransport) -> bool:
    """Relay keystrokes until Ctrl-]; True when the board is left at a REPL prompt (so
    its code.py is not running)."""
    fd = sys.stdin.fileno()
    old = termios.tcgetattr(fd)
    tty.setraw(fd)
    tail = b""
    try:
        while True:
            ready, _, _ = select.select([fd], [], [], 0.05)
            if ready:
                key = os.read(fd, 64)
                if b"\x1d" in key:  # Ctrl-]
                    return tail.endswith(AT_PROMPT)
                t.write_console(key)
            out = t.read_console(0.02)
            if out:
                tail = (tail + out)[-64:]
                os.write(sys.stdout.fileno(), out)
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, old)
