"""The raw REPL over a USB serial port: mpremote's SerialTransport, with CircuitPython's ways.

mpremote (``mpremote.transport_serial.SerialTransport``) speaks the raw REPL. This
subclass runs its code as it is for sending code (raw-paste with its flow-control window,
or plain raw mode where a board lacks it: ``exec_raw_no_follow``, ``raw_paste_write``),
for the ``OK`` / stdout / ``\\x04`` / stderr / ``\\x04`` answer (``follow``), for reading
up to a marker (``read_until``) and for closing the port, and adds what CircuitPython needs:

* Stopping a CircuitPython board: after Ctrl-C it prints "Press any key to enter the
  REPL. Use CTRL-D to reload." and waits for a key, and a board a tool left in the raw
  REPL answers Ctrl-C with nothing. mpremote sends Ctrl-C and Ctrl-A back to back, so
  the Ctrl-A is taken as that key (or arrives while code.py is still stopping);
  ``interrupt`` gets the board to a prompt first (retried: a board auto-reloading after
  a file copy swallows the first attempt), then Ctrl-A: mpremote's ``enter_raw_repl``
  without its first step, "\\r" and Ctrl-C. At a prompt that Ctrl-C is one too many: a
  board that turns Ctrl-C into an interrupt (MicroPython's unix port, the test suite's
  real board, via SIGINT) can take it while it handles the "\\r" line, keep it pending
  and raise it in the next command (the test suite's board then hangs in the raw-paste
  exchange).
* Restarting code.py: a button whose code.py a tool stopped sends nothing, alarms
  included, until it runs again, so the session is a context manager that restarts it on
  every way out (done, refused, failed, Ctrl-C in the tool); ``run_code`` leaves the raw
  REPL (Ctrl-B) and soft-reboots from the friendly prompt (Ctrl-D), which on CircuitPython
  runs code.py, and waits for its "soft reboot". mpremote's soft reset happens inside the
  raw REPL, where CircuitPython does not run code.py. A port that vanished leaves the board
  halted, and the error's hint says how to restart it.
* Opening the port: mpremote's constructor turns every failure into "failed to access
  <port>", losing the errno that tells a missing port from a busy one (another program
  holds it: exclusive open, as mpremote's) or a user not in the dialout group; so the port
  is opened here and mpremote's attributes set as its constructor would. Reads time out
  after ``answer_timeout`` (mpremote's block forever: a board that stops answering mid-way
  hangs it) and ``is_pty`` is False: mpremote reads a pty with blocking one-byte reads,
  which with a timeout would stretch every silence to ``answer_timeout``; Linux reports
  ``in_waiting`` for ptys as for USB ports, and an unplugged port fails there at once.
* Errors: pyserial's and the OS's errors and mpremote's TransportError become a
  :class:`~panictool.transport.TransportError` with a hint for the installer, and
  mpremote's diagnostic prints (the bytes it got, on stdout) are kept off stdout, where
  ``--json`` output goes.
* Reading the console: code.py's output for ``console`` and ``verify`` (mpremote's own
  console is an interactive terminal).
"""

from __future__ import annotations

import contextlib
import errno
import io
import struct
import termios
import time
from collections.abc import Callable, Iterator

import serial
from mpremote import transport as mp
from mpremote import transport_serial as mp_serial

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


class SerialTransport(Transport, mp_serial.SerialTransport):
    """A raw-REPL session on one serial port. Use as a context manager."""

    def __init__(self, port: str, baudrate: int = 115200, *, answer_timeout: float = 5.0,
                 use_raw_paste: bool = True) -> None:
        # mpremote's state, as its constructor sets it (not called: see the docstring).
        self.device_name = port
        self.in_raw_repl = False
        self.use_raw_paste = use_raw_paste
        self.mounted = False
        self.is_pty = False
        self.serial: serial.Serial | None = None
        self.port = port
        self.answer_timeout = answer_timeout
        self.execs = 0  # code blocks run this session
        # True from the first Ctrl-C we send until code.py runs again: the board is halted
        # because of us, and close() must restart it.
        self.halted = False
        self.answered = False  # the board showed a REPL prompt in this session
        self.restarts = 0  # soft reboots into code.py this session did (tests, reports)
        self.left_halted = False  # closed without getting code.py to run (port gone)
        self._replay = b""  # console output already read, that read_console gives first
        try:
            self.serial = serial.Serial(port, baudrate, timeout=answer_timeout,
                                        write_timeout=5.0, exclusive=True)
        except (serial.SerialException, OSError) as e:
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

    @property
    def raw_paste_used(self) -> bool:
        """Code went in raw-paste mode (mpremote drops it after a board refused it)."""
        return bool(self.use_raw_paste and self.execs)

    # -- context ----------------------------------------------------------------------

    def __enter__(self) -> SerialTransport:
        return self

    def __exit__(self, exc_type: object, exc: BaseException | None, tb: object) -> None:
        self.close()
        if self.left_halted and isinstance(exc, TransportError):
            exc.hint = ((exc.hint + "; ") if exc.hint else "") + LEFT_HALTED_HINT

    def close(self) -> None:
        """Restart code.py if this session stopped it, then close the port (mpremote's
        close). Never raises: it runs on every way out of a command, including a
        vanished port."""
        if self.serial is None:
            return
        if self.halted and not self.run_code(best_effort=True):
            self.left_halted = True
        self.in_raw_repl = False
        try:
            super().close()
        except PORT_ERRORS:
            with contextlib.suppress(*PORT_ERRORS):
                self.serial.close()
        self.serial = None

    # -- errors -----------------------------------------------------------------------

    @contextlib.contextmanager
    def _io(self, no_answer: Callable[[Exception], str] | None = None) -> Iterator[None]:
        """Serial I/O here and in mpremote, its errors as TransportErrors with a hint.
        ``no_answer`` words mpremote's own TransportError (the board answered wrongly or
        not at all)."""
        try:
            yield
        except TransportError:
            raise
        except serial.SerialTimeoutException:
            raise TransportError(f"{self.port}: the board stopped reading",
                                 NO_ANSWER_HINT) from None
        except PORT_ERRORS as e:
            raise TransportError(f"{self.port}: {e}; was the board unplugged?") from None
        except (mp.TransportError, struct.error) as e:
            self.in_raw_repl = False  # where the board is now is unknown: enter afresh
            text = no_answer(e) if no_answer else f"the board on {self.port} does not answer"
            raise TransportError(text, NO_ANSWER_HINT) from None

    @contextlib.contextmanager
    def _mpremote(self, no_answer: Callable[[Exception], str]) -> Iterator[None]:
        """A call into mpremote's raw-REPL code: ``_io``'s errors, and what it prints when
        the board answers wrongly (the bytes it got) kept off stdout, where --json output
        goes (panictool is single-threaded: nothing else prints meanwhile)."""
        with self._io(no_answer), contextlib.redirect_stdout(io.StringIO()):
            yield

    def _write(self, data: bytes) -> None:
        with self._io():
            self.serial.write(data)
            self.serial.flush()

    def _read_some(self) -> bytes:
        """Whatever has arrived (a short wait when nothing has)."""
        if self._replay:
            data, self._replay = self._replay, b""
            return data
        with self._io():
            n = self.serial.in_waiting
            if n:
                return self.serial.read(n)
        time.sleep(0.01)
        return b""

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

    # -- REPL states ------------------------------------------------------------------

    def interrupt(self) -> bytes:
        """Stop the running program and get to a prompt; returns what the board printed
        (code.py's last output, banners)."""
        seen = bytearray()
        self.halted = True  # from here on code.py may be stopped: close() restarts it
        # One Ctrl-C, then another only on silence: one sent blindly reaches a board that
        # has already stopped, between two of its prompts (see the module docstring).
        self._write(b"\r\x03")
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

    def enter_raw_repl(self, soft_reset: bool = False, timeout_overall: float | None = None,
                       ) -> None:
        """Interrupt whatever runs, then Ctrl-A and the raw REPL's banner, as mpremote's
        ``enter_raw_repl`` (whose own leading Ctrl-C is left out: see the module docstring);
        tried three times. ``soft_reset``: then a soft reboot inside the raw REPL, which
        keeps code.py stopped."""
        wait = timeout_overall or self.answer_timeout / 2
        banner = RAW_BANNER + b"\r\n"
        for attempt in range(3):
            self.interrupt()
            self._write(b"\r\x01")
            if self.read_until(1, banner, timeout=wait, timeout_overall=wait).endswith(banner):
                break
            if attempt == 2:
                raise TransportError(f"the board on {self.port} does not enter the raw REPL",
                                     NO_ANSWER_HINT)
            self._write(b"\x02")
            self.drain()
        if soft_reset:
            self._write(b"\x04")
            if not (self.read_until(1, b"soft reboot\r\n", timeout_overall=wait)
                    .endswith(b"soft reboot\r\n")
                    and self.read_until(1, banner, timeout_overall=wait).endswith(banner)):
                raise TransportError(f"the board on {self.port} did not come back after a "
                                     "soft reboot", NO_ANSWER_HINT)
        self.in_raw_repl = True  # its ">" prompt is left for mpremote's exec to read

    def read_until(self, min_num_bytes: int, ending: bytes, timeout: float = 10,
                   data_consumer: Callable[[bytes], None] | None = None,
                   timeout_overall: float | None = None) -> bytes:
        """mpremote's ``read_until`` (``timeout``: seconds of silence), its port errors
        as TransportErrors."""
        with self._io():
            return super().read_until(min_num_bytes, ending, timeout, data_consumer,
                                      timeout_overall)

    def soft_reboot(self, run_code: bool = True) -> None:
        """Reload the board. With ``run_code`` code.py runs (the caller then reads the
        console, e.g. the boot report); without, the board stays in a fresh raw REPL."""
        if not run_code:
            self.enter_raw_repl(soft_reset=True)
            return
        if not self.halted:
            self.interrupt()
        if not self.run_code():
            raise TransportError(f"the board on {self.port} did not restart its code.py",
                                 NO_ANSWER_HINT)

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
                self._replay = b""
                self._write(b"\r\x03")  # a snippet still running (Ctrl-C in the tool)
                self.drain(quiet=0.1, limit=min(1.0, wait))
                self._write(b"\x02")  # leave the raw REPL (at the friendly prompt: a banner)
                self.read_until(1, FRIENDLY_PROMPT, timeout=min(1.0, wait))
                self._write(b"\x04")
                seen = self.read_until(1, b"soft reboot", timeout=wait)
            except TransportError:
                if best_effort:
                    return False
                raise
            if seen.endswith(b"soft reboot"):
                # What follows is code.py's console, which the caller may read (the boot
                # report): it starts at the reboot line.
                self._replay = b"\r\nsoft reboot"
                self.in_raw_repl = False
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
            data += self._read_some()
        return bytes(data)

    def write_console(self, data: bytes) -> None:
        self._write(data)

    # -- exec -------------------------------------------------------------------------

    def exec_raw(self, command: str | bytes, timeout: float = 10.0,
                 data_consumer: Callable[[bytes], None] | None = None) -> tuple[bytes, bytes]:
        """mpremote's ``exec_raw`` (raw-paste where the board offers it), entering the raw
        REPL first when this session is not in it; (stdout, stderr) with ``\\n`` lines."""
        if not self.in_raw_repl:
            self.enter_raw_repl()
        with self._mpremote(lambda e: f"the board on {self.port} does not answer as a raw "
                            f"REPL ({e})"):
            out, err = super().exec_raw(command, timeout, data_consumer)
        self.execs += 1
        return out.replace(b"\r\n", b"\n"), err.replace(b"\r\n", b"\n")
