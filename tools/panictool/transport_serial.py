"""The raw REPL over a USB serial port (pyserial), as CircuitPython and MicroPython offer it.

Protocol (the same one mpremote speaks): Ctrl-C interrupts the running program; a
CircuitPython board then waits at "Press any key to enter the REPL", so we send a key; Ctrl-A
enters the raw REPL (banner "raw REPL; CTRL-B to exit", prompt ``>``). Code is sent either in
raw-paste mode (Ctrl-E A Ctrl-A; the board answers ``R\\x01`` and a flow-control window, and
sends ``\\x01`` each time another window may be sent) or, when the board does not offer it, in
plain raw mode; then Ctrl-D. The board answers ``OK``, the program's stdout, ``\\x04``, its
stderr, ``\\x04``, ``>``. Ctrl-B leaves the raw REPL; Ctrl-D at the normal prompt reloads
(CircuitPython runs code.py again).

A button whose code.py a tool stopped sends nothing (no alarm, no heartbeat) until it runs
again, so the session is a context manager that restarts code.py on every way out: done,
refused, failed, Ctrl-C in the tool, or the board gone (then there is nothing to restart:
a board that comes back powers up into code.py by itself).
"""

from __future__ import annotations

import errno
import struct
import termios
import time

import serial

from panicgw import ports
from panictool.transport import Transport, TransportError

# What a vanished port raises: pyserial's own errors, the OS's, and termios' (tcdrain on a
# pty or USB device that went away raises termios.error, which is neither).
PORT_ERRORS = (serial.SerialException, OSError, termios.error)
RAW_BANNER = b"raw REPL; CTRL-B to exit"
PRESS_ANY_KEY = b"Press any key to enter the REPL"
FRIENDLY_PROMPT = b">>> "

DIALOUT_HINT = ("add your user to the dialout group: `sudo usermod -aG dialout $USER`, "
                "then log out and back in")
BUSY_HINT = ("another program holds the port (a serial monitor, mpremote, screen, or a running "
             "panicgw with this port as its bridge): close it and try again")
LEFT_HALTED_HINT = ("the button may be left stopped (it sends nothing, alarms included): "
                    "press its reset button, or plug it back in and run `panictool console "
                    "--reload --seconds 5`")
NO_ANSWER_HINT = ("is the board running CircuitPython? Unplug and replug it, press reset once, "
                  "and check it is the console port (the bridge's data port does not answer)")


def auto_port() -> str:
    """The console port of the one CircuitPython board (panicgw.ports' rule), or a
    TransportError saying why not: several boards are refused, never guessed between."""
    try:
        return ports.console_port()
    except ports.PortError as e:
        raise TransportError(str(e), e.hint) from None


class SerialTransport(Transport):
    """A raw-REPL session on one serial port. Use as a context manager."""

    def __init__(self, port: str, baudrate: int = 115200, *, answer_timeout: float = 5.0,
                 use_raw_paste: bool = True) -> None:
        self.port = port
        self.answer_timeout = answer_timeout
        self.use_raw_paste = use_raw_paste
        self.in_raw = False
        self.raw_paste_used = False
        # True from the first Ctrl-C we send until code.py runs again: the board is halted
        # because of us, and close() must restart it.
        self.halted = False
        self.answered = False  # the board showed a REPL prompt in this session
        self.restarts = 0  # soft reboots into code.py this session did (tests, reports)
        self.left_halted = False  # closed without getting code.py to run (port gone)
        self._pushback = b""
        try:
            self.serial = serial.Serial(port, baudrate, timeout=0.05, write_timeout=5.0,
                                        exclusive=True)
        except serial.SerialException as e:
            raise self._open_error(e) from None
        except OSError as e:
            raise self._open_error(e) from None

    def _open_error(self, e: Exception) -> TransportError:
        no = getattr(e, "errno", None)
        text = str(e)
        if no == errno.EACCES or "Permission denied" in text:
            return TransportError(f"permission denied opening {self.port}", DIALOUT_HINT)
        if no == errno.EBUSY or "exclusively lock" in text or "Device or resource busy" in text:
            return TransportError(f"{self.port} is busy", BUSY_HINT)
        if no == errno.ENOENT or "No such file" in text or "could not open port" in text:
            return TransportError(f"no serial port {self.port}",
                                  "check the cable; `panictool console --list` shows the ports")
        return TransportError(f"cannot open {self.port}: {text}")

    # -- context ------------------------------------------------------------------------------

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close()
        if self.left_halted and isinstance(exc, TransportError):
            exc.hint = ((exc.hint + "; ") if exc.hint else "") + LEFT_HALTED_HINT

    def close(self) -> None:
        """Restart code.py if this session stopped it, then close the port. Never raises:
        it runs on every way out of a command, including a vanished port."""
        if getattr(self, "serial", None) is None:
            return
        if self.halted and not self.run_code(best_effort=True):
            self.left_halted = True
        self.in_raw = False
        try:
            self.serial.close()
        except PORT_ERRORS:
            pass
        self.serial = None

    # -- low-level I/O ------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        try:
            self.serial.write(data)
            self.serial.flush()
        except serial.SerialTimeoutException:
            raise TransportError(f"{self.port}: the board stopped reading",
                                 NO_ANSWER_HINT) from None
        except PORT_ERRORS as e:
            raise TransportError(f"{self.port}: write failed ({e}); was the board unplugged?") \
                from None

    def _in_waiting(self) -> int:
        try:
            return int(self.serial.in_waiting)
        except PORT_ERRORS as e:
            raise TransportError(f"{self.port}: read failed ({e}); was the board unplugged?") \
                from None

    def _read_some(self) -> bytes:
        if self._pushback:
            return self._take_pushback(len(self._pushback))
        try:
            n = self.serial.in_waiting
            return self.serial.read(max(1, n))
        except PORT_ERRORS as e:
            raise TransportError(f"{self.port}: read failed ({e}); was the board unplugged?") \
                from None

    def read_until(self, ending: bytes, timeout: float, *, max_bytes: int = 1 << 20) -> bytes:
        """Bytes up to and including ``ending``; whatever came when ``timeout`` (seconds of
        silence) ran out is returned without it, so callers test ``endswith``."""
        data = bytearray()
        last = time.monotonic()
        while True:
            chunk = self._read_some()
            if chunk:
                data += chunk
                last = time.monotonic()
                idx = data.find(ending)
                if idx >= 0:
                    extra = bytes(data[idx + len(ending):])
                    if extra:
                        self._pushback = extra + self._pushback
                    return bytes(data[:idx + len(ending)])
                if len(data) > max_bytes:
                    raise TransportError(f"{self.port}: the board sent too much output")
            elif time.monotonic() - last > timeout:
                return bytes(data)

    def _read_exact(self, n: int, timeout: float) -> bytes:
        data = bytearray(self._take_pushback(n))
        end = time.monotonic() + timeout
        while len(data) < n and time.monotonic() < end:
            try:
                data += self.serial.read(n - len(data))
            except PORT_ERRORS as e:
                raise TransportError(f"{self.port}: read failed ({e}); was the board "
                                     "unplugged?") from None
        return bytes(data)

    def _take_pushback(self, n: int) -> bytes:
        pb = self._pushback
        self._pushback = pb[n:]
        return pb[:n]

    def drain(self, quiet: float = 0.15, limit: float = 2.0) -> bytes:
        """Read until the board has been quiet for ``quiet`` seconds (at most ``limit``)."""
        data = bytearray()
        start = last = time.monotonic()
        while time.monotonic() - last < quiet and time.monotonic() - start < limit:
            chunk = self._read_some()
            if chunk:
                data += chunk
                last = time.monotonic()
        return bytes(data)

    # -- REPL states --------------------------------------------------------------------------

    def interrupt(self) -> bytes:
        """Stop the running program and get to the normal ``>>>`` prompt; returns what the
        board printed (code.py's last output, banners)."""
        seen = bytearray()
        self.halted = True  # from here on code.py may be stopped: close() restarts it
        self._write(b"\r\x03")
        time.sleep(0.05)
        self._write(b"\x03")
        deadline = time.monotonic() + self.answer_timeout
        pressed = False
        while time.monotonic() < deadline:
            seen += self.drain(quiet=0.2, limit=1.0)
            if PRESS_ANY_KEY in seen and not pressed:
                self._write(b"\r")  # CircuitPython waits for a key after code.py ends
                pressed = True
                continue
            if seen.rstrip(b" ").endswith(b">>>") or seen.endswith((b"\n>", b"\x04>")) \
                    or RAW_BANNER in seen:
                self.answered = True
                return bytes(seen)
            # Silence: the first Ctrl-C went into a reload, or the board sits in a raw REPL
            # (left there by a tool that lost the port), where Ctrl-C prints nothing:
            # Ctrl-B leaves it (at the prompt: a banner; while code runs: ignored).
            self._write(b"\x02\r\x03")
        raise TransportError(f"the board on {self.port} does not answer", NO_ANSWER_HINT)

    def enter_raw_repl(self) -> None:
        """Interrupt whatever runs and enter the raw REPL (retried once: a board that was
        auto-reloading after a file copy may swallow the first attempt)."""
        for attempt in range(3):
            self.interrupt()
            self._write(b"\r\x01")
            data = self.read_until(RAW_BANNER, timeout=self.answer_timeout / 2)
            if data.endswith(RAW_BANNER):
                prompt = self.read_until(b">", timeout=self.answer_timeout / 2)
                if prompt.endswith(b">"):
                    self.in_raw = True
                    return
            if attempt < 2:
                self._write(b"\x02")
                self.drain()
        raise TransportError(f"the board on {self.port} does not enter the raw REPL",
                             NO_ANSWER_HINT)

    def exit_raw_repl(self) -> None:
        if self.in_raw:
            self._write(b"\r\x02")
            self.in_raw = False

    def soft_reboot(self, run_code: bool = True) -> None:
        """Reload the board. With ``run_code`` code.py runs (the caller then reads the
        console, e.g. the boot report); without, the board stays in a fresh raw REPL."""
        if run_code:
            if not self.halted:
                self.interrupt()
            if not self.run_code():
                raise TransportError(f"the board on {self.port} did not restart its code.py",
                                     NO_ANSWER_HINT)
            return
        if not self.in_raw:
            self.enter_raw_repl()
        self._write(b"\x04")
        data = self.read_until(RAW_BANNER, timeout=self.answer_timeout)
        if not data.endswith(RAW_BANNER):
            raise TransportError(f"the board on {self.port} did not come back after reboot",
                                 NO_ANSWER_HINT)
        self.read_until(b">", timeout=1.0)

    def run_code(self, best_effort: bool = False) -> bool:
        """Get the board from wherever this session left it (raw REPL, a snippet still
        running, the friendly prompt, "Press any key") back to running code.py: Ctrl-C
        stops a snippet, Ctrl-B leaves the raw REPL, Ctrl-D at the friendly prompt is the
        soft reboot. True once the board said "soft reboot". ``best_effort``: never
        raise (the port may be gone) and give up sooner on a board that never answered."""
        wait = self.answer_timeout if self.answered or not best_effort \
            else self.answer_timeout / 4
        for _ in range(2):
            try:
                self._pushback = b""
                self._write(b"\r\x03")  # a snippet still running (Ctrl-C in the tool)
                self.drain(quiet=0.1, limit=min(1.0, wait))
                self._write(b"\x02")  # leave the raw REPL (at the friendly prompt: a banner)
                self.read_until(FRIENDLY_PROMPT, timeout=min(1.0, wait))
                self._write(b"\x04")
                seen = self.read_until(b"soft reboot", timeout=wait)
            except TransportError:
                if best_effort:
                    return False
                raise
            if seen.endswith(b"soft reboot"):
                # What follows is code.py's console, which the caller may read (the boot
                # report): it starts at the reboot line.
                self._pushback = b"\r\nsoft reboot" + self._pushback
                self.in_raw = False
                self.halted = False
                self.restarts += 1
                return True
            if not self.answered:
                break
        return False

    def read_console(self, timeout: float = 0.2) -> bytes:
        """Whatever the board printed within ``timeout`` seconds (for monitors and reports)."""
        data = bytearray()
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            chunk = self._read_some()
            if chunk:
                data += chunk
        return bytes(data)

    def write_console(self, data: bytes) -> None:
        self._write(data)

    # -- exec --------------------------------------------------------------------------------

    def _raw_paste(self, code: bytes) -> bool:
        """Send ``code`` in raw-paste mode; False when the board does not offer it."""
        self._write(b"\x05A\x01")
        head = self._read_exact(2, self.answer_timeout)
        if head == b"R\x00":
            return False
        if head != b"R\x01":
            # An old firmware took it as text: get back to the clean raw prompt.
            data = self.read_until(RAW_BANNER, timeout=1.0)
            if data.endswith(RAW_BANNER):
                self.read_until(b">", timeout=1.0)
                return False
            raise TransportError(f"the board on {self.port} answered raw-paste with {head!r}",
                                 NO_ANSWER_HINT)
        win = self._read_exact(2, self.answer_timeout)
        if len(win) != 2:
            raise TransportError(f"the board on {self.port} stopped during raw-paste setup")
        window = struct.unpack("<H", win)[0]
        remain = window
        i = 0
        while i < len(code):
            while remain == 0 or self._pushback or self._in_waiting():
                b = self._read_exact(1, self.answer_timeout)
                if b == b"\x01":
                    remain += window
                elif b == b"\x04":  # the board ended the paste (e.g. a syntax error early)
                    self._write(b"\x04")
                    return True
                else:
                    raise TransportError(f"unexpected {b!r} from the board during raw-paste")
            part = code[i:i + remain]
            self._write(part)
            remain -= len(part)
            i += len(part)
        self._write(b"\x04")
        ack = self.read_until(b"\x04", timeout=self.answer_timeout)
        if not ack.endswith(b"\x04"):
            raise TransportError(f"the board on {self.port} did not finish the raw-paste")
        return True

    def exec_raw(self, code: str, timeout: float = 10.0) -> tuple[bytes, bytes]:
        if not self.in_raw:
            self.enter_raw_repl()
        body = code.encode("utf-8")
        sent = False
        if self.use_raw_paste:
            sent = self._raw_paste(body)
            if not sent:
                self.use_raw_paste = False
            else:
                self.raw_paste_used = True
        if not sent:
            for i in range(0, len(body), 256):
                self._write(body[i:i + 256])
                time.sleep(0.01)
            self._write(b"\x04")
            ok = self._read_exact(2, self.answer_timeout)
            if ok != b"OK":
                self.in_raw = False
                raise TransportError(f"the board on {self.port} refused the code ({ok!r})",
                                     NO_ANSWER_HINT)
        out = self.read_until(b"\x04", timeout=timeout)
        if not out.endswith(b"\x04"):
            self.in_raw = False
            raise TransportError(f"no answer from the board on {self.port} within {timeout:.0f} s",
                                 NO_ANSWER_HINT)
        err = self.read_until(b"\x04", timeout=timeout)
        self.read_until(b">", timeout=timeout)
        return out[:-1].replace(b"\r\n", b"\n"), err[:-1].replace(b"\r\n", b"\n")
