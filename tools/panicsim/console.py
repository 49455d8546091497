"""A simulated board's USB serial console on a pty: code.py's output, Ctrl-C, the friendly
REPL and the raw REPL (with raw-paste), as CircuitPython offers them over USB.

Installer tools (``panictool provision`` / ``verify`` / ``console``) open ``path`` with
pyserial exactly as they open /dev/ttyACM0. What they send really runs: the raw REPL
compiles and executes the code with CPython, against this board's hardware modules
(``microcontroller.nvm`` is the board's NVM, ``board.board_id`` its id) and its CIRCUITPY
directory (``open``/``os`` are rooted at ``board.drive``). Imports are the board's: its
built-ins and the modules on its filesystem (``/``, ``/lib``), never the host's.
Ctrl-C stops code.py; Ctrl-D at the friendly prompt (or after "Press any key")
soft-reloads it, which runs the real firmware again from the top. Ctrl-D in the raw REPL
with nothing typed is a soft reboot that stays in the raw REPL (code.py does not run).

Output while no program has the port open is dropped, as USB CDC does without a host.
Code sent to the REPL cannot be interrupted with Ctrl-C (CPython cannot stop a thread);
the tools only send short snippets.
"""

from __future__ import annotations

import code as pycode
import errno
import io
import os as _os
import struct
import threading
import traceback
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from panicsim.serialport import PtySerial

RAW_BANNER = b"raw REPL; CTRL-B to exit\r\n"
PRESS_ANY_KEY = b"\r\nPress any key to enter the REPL. Use CTRL-D to reload.\r\n"
PASTE_WINDOW = 128  # bytes the host may send before it waits for \x01
RUNNING, WAIT_KEY, FRIENDLY, RAW, PASTE = "running", "wait_key", "friendly", "raw", "paste"


class _Drive:
    """``open`` and the ``os`` file calls, confined to the board's CIRCUITPY directory."""

    def __init__(self, root: Path | None) -> None:
        self.root = root.resolve() if root is not None else None

    def path(self, p: str) -> Path:
        if self.root is None:
            raise OSError(errno.ENOENT, "this simulated board has no CIRCUITPY drive")
        full = (self.root / str(p).lstrip("/")).resolve()
        if full != self.root and self.root not in full.parents:
            raise OSError(errno.ENOENT, f"{p}: outside the board's filesystem")
        return full

    def open(self, p: str, mode: str = "r", *a: Any, **kw: Any) -> Any:
        return open(self.path(p), mode, *a, **kw)

    def os_module(self, sim_os: Any) -> SimpleNamespace:
        def ilistdir(p: str = "/") -> list[tuple[str, int, int]]:
            out = []
            for e in sorted(_os.scandir(self.path(p)), key=lambda e: e.name):
                out.append((e.name, 0x4000 if e.is_dir() else 0x8000, 0))
            return out

        return SimpleNamespace(
            getenv=sim_os.getenv, uname=sim_os.uname, sep="/",
            listdir=lambda p="/": sorted(_os.listdir(self.path(p))), ilistdir=ilistdir,
            stat=lambda p: tuple(_os.stat(self.path(p)))[:10],
            mkdir=lambda p: _os.mkdir(self.path(p)), remove=lambda p: _os.remove(self.path(p)),
            rmdir=lambda p: _os.rmdir(self.path(p)),
            rename=lambda a, b: _os.rename(self.path(a), self.path(b)))


class UsbConsole:
    """The console of ``board`` (a panicsim.board.SimBoard, which creates it in
    ``usb_console()``); ``path`` is the serial port to open."""

    def __init__(self, board: Any, link_dir: str | None = None) -> None:
        self.board = board
        self.serial = PtySerial(link_dir, name=f"ttyCONSOLE-{board.name}")
        self.state = RUNNING
        self._seen_running = board.running
        self.execs = 0  # code blocks the raw REPL ran (tests)
        self.reloads = 0
        self._buf = bytearray()
        self._line = bytearray()
        self._paste_got = 0
        self._globals: dict[str, Any] | None = None
        self._builtins: dict[str, Any] = {}
        self._more: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, name=f"usb-{board.name}",
                                        daemon=True)
        self._thread.start()

    @property
    def path(self) -> str:
        return self.serial.path

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self.serial.close()

    # -- output -----------------------------------------------------------------------
    def output(self, text: str) -> None:
        """One line printed by code.py (called from the firmware thread)."""
        if self.state == RUNNING:
            self._send(text.encode("utf-8", "replace") + b"\r\n")

    def _send(self, data: bytes) -> None:
        if not self.serial.connected:
            return  # no host: USB CDC drops it
        try:
            self.serial.write(data)
        except OSError:
            pass  # the host stopped reading; a real board drops output too

    # -- input ------------------------------------------------------------------------
    def on_boot(self) -> None:
        """code.py is about to start (power on or reload): the console shows it again.
        "Code done running." follows once the firmware thread was seen alive and ended."""
        self.state = RUNNING
        self._seen_running = False

    def _serve(self) -> None:
        while not self._stop.is_set():
            ready = self.serial.wait_readable(0.05)
            data = self.serial.read(4096) if ready else b""
            if ready and not data:
                self._stop.wait(0.05)  # no host has the port open (hang-up)
            if self.state == RUNNING:
                if self.board.running:
                    self._seen_running = True
                elif self._seen_running:
                    self._seen_running = False
                    self._code_done()
            for i in range(len(data)):
                try:
                    self._byte(data[i:i + 1])
                except Exception:  # the console must outlive any bug in one request
                    self._send(traceback.format_exc().replace("\n", "\r\n").encode())

    def _byte(self, b: bytes) -> None:
        st = self.state
        if st == RUNNING:
            if b == b"\x03":
                self.board._halt_thread()
                self._send(b"Traceback (most recent call last):\r\n  File \"code.py\"\r\n"
                           b"KeyboardInterrupt: \r\n\r\nCode done running.\r\n" + PRESS_ANY_KEY)
                self.state = WAIT_KEY
            elif b == b"\x04":
                self._reload()
        elif st == WAIT_KEY:
            if b == b"\x04":
                self._reload()
            else:
                self._friendly_prompt(banner=True)
        elif st == FRIENDLY:
            self._friendly_byte(b)
        elif st == RAW:
            self._raw_byte(b)
        elif st == PASTE:
            self._paste_byte(b)

    def _code_done(self) -> None:
        self._send(b"\r\nCode done running.\r\n" + PRESS_ANY_KEY)
        self.state = WAIT_KEY

    def _reload(self) -> None:
        self.reloads += 1
        self._globals = None
        self.state = RUNNING
        self._send(b"\r\nsoft reboot\r\n\r\nAuto-reload is off.\r\ncode.py output:\r\n")
        self.board.reload()  # calls on_boot()

    # -- friendly REPL ----------------------------------------------------------------
    def _friendly_prompt(self, banner: bool = False) -> None:
        self.state = FRIENDLY
        self._line.clear()
        self._more = []
        head = b""
        if banner:
            head = (f"\r\nAdafruit CircuitPython (panicsim) on {self.board.board_id}\r\n"
                    ).encode()
        self._send(head + b">>> ")

    def _friendly_byte(self, b: bytes) -> None:
        if b == b"\x01":
            self.state = RAW
            self._buf.clear()
            self._send(b"\r\n" + RAW_BANNER + b">")
        elif b == b"\x02":
            self._friendly_prompt(banner=True)
        elif b == b"\x03":
            self._send(b"\r\nKeyboardInterrupt\r\n")
            self._friendly_prompt()
        elif b == b"\x04":
            if not self._line and not self._more:
                self._reload()
        elif b in (b"\r", b"\n"):
            line = self._line.decode("utf-8", "replace")
            self._line.clear()
            self._send(b"\r\n")
            self._more.append(line)
            out, more = self._interactive("\n".join(self._more))
            if not more:
                self._more = []
            self._send(out.replace("\n", "\r\n").encode() + (b"... " if more else b">>> "))
        elif b in (b"\x7f", b"\x08"):
            if self._line:
                self._line = self._line[:-1]
                self._send(b"\x08 \x08")
        elif b >= b" ":
            self._line += b
            self._send(b)

    def _interactive(self, source: str) -> tuple[str, bool]:
        """Run one friendly-REPL entry; (output, True when more lines are needed)."""
        out = io.StringIO()
        g = self._namespace(out)
        try:
            if pycode.compile_command(source, "<stdin>", "single") is None:
                return "", True
            try:
                expr = compile(source, "<stdin>", "eval")
            except SyntaxError:
                exec(compile(source, "<stdin>", "exec"), g)
            else:
                value = eval(expr, g)
                if value is not None:
                    out.write(repr(value) + "\n")
        except BaseException as e:  # shown, as the board's REPL would
            out.write(_error_text(e))
        return out.getvalue(), False

    # -- raw REPL ---------------------------------------------------------------------
    def _raw_byte(self, b: bytes) -> None:
        buf = self._buf
        if b == b"\x01" and not buf:
            self._send(b"\r\n" + RAW_BANNER + b">")
        elif b == b"\x01" and buf == b"\x05A":
            buf.clear()
            self.state = PASTE
            self._paste_got = 0
            self._send(b"R\x01" + struct.pack("<H", PASTE_WINDOW))
        elif b == b"\x02":
            self._friendly_prompt(banner=True)
        elif b == b"\x03":
            buf.clear()
        elif b == b"\x04":
            if not buf:
                self._globals = None
                self._send(b"OK\r\nsoft reboot\r\n" + RAW_BANNER + b">")
                return
            src = bytes(buf)
            buf.clear()
            self._send(b"OK")
            self._run_raw(src)
        else:
            buf += b

    def _paste_byte(self, b: bytes) -> None:
        if b == b"\x04":
            self._send(b"\x04")
            src = bytes(self._buf)
            self._buf.clear()
            self.state = RAW
            self._run_raw(src)
            return
        self._buf += b
        self._paste_got += 1
        if self._paste_got % PASTE_WINDOW == 0:
            self._send(b"\x01")  # another window may come

    def _run_raw(self, src: bytes) -> None:
        out = io.StringIO()
        err = ""
        g = self._namespace(out)
        self.execs += 1
        try:
            exec(compile(src.decode("utf-8", "replace"), "<stdin>", "exec"), g)
        except BaseException as e:  # the board reports it and returns to the prompt
            err = _error_text(e)
        self._send(out.getvalue().replace("\n", "\r\n").encode() + b"\x04"
                   + err.replace("\n", "\r\n").encode() + b"\x04>")

    # -- what REPL code sees ----------------------------------------------------------
    def _namespace(self, out: io.StringIO) -> dict[str, Any]:
        """Globals kept for the REPL session (cleared by a reload); print goes to ``out``."""
        with self._lock:
            if self._globals is None:
                self.board.halt.clear()  # code.py is stopped: its halt flag is spent
                modules = self.board.modules()
                drive = _Drive(self.board.drive)
                modules["os"] = drive.os_module(modules["os"])
                root = self.board.drive or self.board.firmware_tree()
                space = self.board.module_space(modules, root)
                b = space.builtins
                b["open"] = drive.open
                self._builtins = b
                self._globals = {"__name__": "__main__", "__builtins__": b}
            sink = out

            def repl_print(*args: Any, sep: str | None = " ", end: str | None = "\n",
                           file: Any = None, flush: bool = False) -> None:
                if file is not None:
                    print(*args, sep=sep, end=end, file=file, flush=flush)
                    return
                sink.write((sep if sep is not None else " ").join(str(a) for a in args)
                           + (end if end is not None else "\n"))

            self._builtins["print"] = repl_print
            return self._globals


def _error_text(e: BaseException) -> str:
    """A traceback as CircuitPython prints it (OSError subclasses print as OSError, which
    is what tools parse for the errno)."""
    name = "OSError" if isinstance(e, OSError) else type(e).__name__
    if isinstance(e, OSError) and e.errno is not None:
        msg = f"[Errno {e.errno}] {e.strerror}"
    else:
        msg = str(e)
    tb = traceback.extract_tb(e.__traceback__)
    line = next((f.lineno for f in reversed(tb) if f.filename == "<stdin>"), 1)
    return (f"Traceback (most recent call last):\n  File \"<stdin>\", line {line}, "
            f"in <module>\n{name}: {msg}\n")
