"""A real MicroPython VM behind a pseudo-terminal, standing in for a CircuitPython board.

``micropython`` runs with a pty slave as its stdin/stdout (so it offers the raw REPL and
raw-paste), its working directory standing in for the board's filesystem, and shim
``microcontroller``/``board`` modules on MICROPYPATH (``nvm`` persisted to a file). pyserial
needs a device path, and the VM's pty master has none, so a relay thread joins the VM's pty
master to a second pty whose slave path the host opens like /dev/ttyACM0.

Like a board, it runs ``code.py`` when it has one (``micropython -i code.py``: Ctrl-C
stops it with a KeyboardInterrupt and leaves the REPL), and a soft reboot (Ctrl-D at the
REPL or in the raw REPL, where the unix port exits) starts it again from the top: the
supervisor prints ``soft reboot`` and restarts the VM on the same pty, RAM lost, NVM and
files kept. A board whose code.py is not running after a tool is done is *halted*:
``wait_line`` on a TEST request shows whether it still acts on input.

With ``air=`` it is a whole board for the firmware (``hardware mode``): the VM sees only
its filesystem (``/`` and ``/lib`` of CIRCUITPY, exactly what ``panictool flash`` wrote)
and CircuitPython's built-in modules as stand-ins (tests/gates/standins: ``board``,
``digitalio``, ``keypad``, ``alarm``, ``microcontroller`` with NVM in a file, ``os.getenv``
reading settings.toml, ...), code.py runs as CircuitPython runs it (launch.py), and the
board's RFM95 is the register-level SX127x model (tools/panicsim/sx127x.py) driven by the
real ``adafruit_rfm`` library. Its antenna is on a panicsim ``Air``: what the chip
transmits goes on that air (airtime from its modulation), and what the air delivers to a
radio on the chip's frequency, SF and bandwidth goes back into the chip, which keeps it
only if it was receiving for the whole packet. ``press``/``click``/``test`` put a finger
on the button. Deep sleep is CircuitPython's with USB connected (wait for the alarm, then
code.py again with ``alarm.wake_alarm`` set); sleep memory survives soft reboots and is
cleared at power-on (``start``).
"""

from __future__ import annotations

import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"
STANDINS = ROOT / "tests" / "gates" / "standins"
SX127X = ROOT / "tools" / "panicsim" / "sx127x.py"
CLOSED_POLL_S = 0.01  # how soon the relay looks again at a pty side nobody has open

MICROCONTROLLER = '''
NVM_FILE = "%(nvm)s"
NVM_SIZE = %(size)d


class _Nvm:
    def _load(self):
        with open(NVM_FILE, "rb") as f:
            return bytearray(f.read())

    def __len__(self):
        return NVM_SIZE

    def __getitem__(self, i):
        return self._load()[i]

    def __setitem__(self, i, v):
        b = self._load()
        b[i] = v
        with open(NVM_FILE, "wb") as f:
            f.write(b)


nvm = _Nvm()
'''

# A code.py that acts on input as a button acts on its pin: a line "TEST" on the console
# is a TEST press, answered with the firmware's press line. It reads the identity from NVM
# at every start, as the firmware does, so a tool that halted it leaves no answer at all.
ANSWERING_CODE = '''
import sys
import microcontroller
print("PANIC-BUTTON mpboard code.py running, nvm %d bytes" % len(microcontroller.nvm))
n = 0
while True:
    line = sys.stdin.readline()
    if not line:
        break
    if line.strip() == "TEST":
        n += 1
        print("PANIC-BUTTON press: test counter=%d" % n)
'''


# The VM's parent: a process of its own, started before any tool opens the port, so a
# soft reboot (a fresh VM) never inherits a copy of the tool's port descriptor, whose lock
# would make the tool's next open fail as "busy" (on a real board the tool is another
# process altogether). It runs the VM on the pty whose fd it is given until terminated.
SUPERVISOR = r"""
import fcntl, os, signal, subprocess, sys, termios
slave, cwd, argv = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
child = None

def setup():
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)
    # SIGINT ignored until the VM installs its own handler: a Ctrl-C during its start-up
    # must not kill it.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

def stop(*_):
    if child is not None and child.poll() is None:
        os.killpg(child.pid, signal.SIGKILL)
    os._exit(0)

signal.signal(signal.SIGTERM, stop)
first = True
while True:
    if not first:
        os.write(slave, b"\r\nsoft reboot\r\n")
    first = False
    child = subprocess.Popen(argv, stdin=slave, stdout=slave, stderr=slave, cwd=cwd,
                             preexec_fn=setup)
    child.wait()
"""


class AirLink:
    """The host end of a hardware-mode board's wires (tests/gates/standins/hwwire.py): a
    TCP server on 127.0.0.1 that each VM run of the board connects to when it imports
    ``board``. It is the board's antenna on ``air`` (a radio the air delivers to, on the
    modulation the chip last reported) and the levels of the pins a person drives."""

    def __init__(self, air: Any, name: str, pins: dict[str, bool]) -> None:
        self.air = air
        self.name = name
        self.pins = dict(pins)
        self.modem: dict | None = None  # the chip's modulation, as last reported
        self.sent: list[tuple[float, int, bytes]] = []  # (air time, SF, packet as on air)
        self.received: list[bytes] = []  # packets the air delivered while a VM was connected
        self._conn: socket.socket | None = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._srv = socket.create_server(("127.0.0.1", 0))
        self._srv.settimeout(0.2)
        self.port = self._srv.getsockname()[1]
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()
        air.attach(self)

    # -- what the air asks of a radio -------------------------------------------------
    @property
    def frequency_mhz(self) -> float | None:
        return self.modem["frequency_mhz"] if self.modem else None

    @property
    def spreading_factor(self) -> int | None:
        return self.modem["sf"] if self.modem else None

    @property
    def signal_bandwidth(self) -> int | None:
        return self.modem["bw_hz"] if self.modem else None

    def deliver(self, tx: Any) -> None:
        """A packet on air for this radio: to the chip, with its start and end as wall
        time (the chip's clock)."""
        off = time.time() - self.air.clock.now()
        if self._send({"t": "rx", "p": tx.data.hex(), "s": tx.start + off, "e": tx.end + off,
                       "rssi": self.air.rssi, "snr": self.air.snr, "ok": tx.crc_ok}):
            self.received.append(bytes(tx.data))

    # -- the person at the board --------------------------------------------------------
    def drive(self, pin: str, level: bool) -> None:
        self.pins[pin] = level
        self._send({"t": "pin", "n": pin, "v": level, "at": time.time()})

    # -- the connection -----------------------------------------------------------------
    def _send(self, msg: dict) -> bool:
        with self._lock:
            conn = self._conn
            if conn is None:
                return False
            try:
                conn.sendall((json.dumps(msg) + "\n").encode())
                return True
            except OSError:
                return False

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._srv.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
            self._threads.append(t)
            t.start()

    def _serve(self, conn: socket.socket) -> None:
        buf = b""
        try:
            while not self._stop.is_set():
                data = conn.recv(65536)
                if not data:
                    return
                buf += data
                while b"\n" in buf:
                    line, buf = buf.split(b"\n", 1)
                    self._handle(conn, json.loads(line))
        except OSError:
            return
        finally:
            with self._lock:
                if self._conn is conn:
                    self._conn = None
                    self.modem = None  # that VM run is gone; the next one sets the chip up
            conn.close()

    def _handle(self, conn: socket.socket, msg: dict) -> None:
        kind = msg["t"]
        if kind == "hello":  # a new VM run (power-on, soft reboot) took over the board
            with self._lock:
                old, self._conn = self._conn, conn
                self.modem = None
            if old is not None:
                old.close()
            self._send({"t": "hello", "pins": self.pins, "noise": self.air.noise_dbm})
        elif kind == "modem":
            m = dict(msg["m"])
            m["frequency_mhz"] = round(m["frequency_mhz"], 3)
            self.modem = m
        elif kind == "tx":
            m = dict(msg["m"])
            m["frequency_mhz"] = round(m["frequency_mhz"], 3)
            data = bytes.fromhex(msg["p"])
            start = self.air.clock.now() - max(0.0, time.time() - msg["at"])
            keep, self.modem = self.modem, m  # the air takes the sender's modulation from
            try:                              # .modem while it transmits
                dur = self.air.transmit(self, data, m["frequency_mhz"], m["sf"], m["bw_hz"],
                                        start=start)
            finally:
                self.modem = keep if keep is not None else m
            self.sent.append((start, m["sf"], data))
            del self.sent[:-500]
            self._send({"t": "txdone", "dur": dur})

    def close(self) -> None:
        self._stop.set()
        self.air.detach(self)
        with self._lock:
            conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._srv.close()
        for t in self._threads:
            t.join(2)


class MpBoard:
    """Start with ``start()``; ``port`` is the path to open; ``stop()`` cleans everything.

    ``air``: hardware mode (see the module's doc), the board's radio on that air, named
    ``name`` there; ``pins_low``: pins held low from the start (the Feather's tamper
    switch, closed); ``fs_name``: the name of the filesystem's directory."""

    def __init__(self, tmp: Path, board_id: str = "adafruit_feather_rp2040_rfm",
                 nvm_size: int | None = None, code: str | None = None, air: Any = None,
                 name: str = "mpboard", radio_pins: tuple[str, str] | None = (
                     "RFM_CS", "RFM_RST"), pins_low: tuple[str, ...] = ("D6",),
                 heap: str = "256k", fs_name: str = "board") -> None:
        if nvm_size is None:  # a Feather RP2040's CircuitPython NVM in hardware mode
            nvm_size = 4096 if air is not None else 8192
        self.fs = tmp / fs_name  # the board's filesystem (a drive mounted as CIRCUITPY)
        self.fs.mkdir()
        self.shim = tmp / "shim"
        self.shim.mkdir()
        self.heap = heap
        self.nvm_file = tmp / "nvm.bin"
        self.nvm_file.write_bytes(b"\xff" * nvm_size)
        self.sleep_file = tmp / "sleep_memory.bin"
        self.link: AirLink | None = None
        if air is None:
            (self.shim / "microcontroller.py").write_text(
                MICROCONTROLLER % {"nvm": str(self.nvm_file), "size": nvm_size})
            (self.shim / "board.py").write_text(f"board_id = {board_id!r}\n")
        else:
            self.link = AirLink(air, name, {"D5": True})
            for f in STANDINS.glob("*.py"):
                shutil.copy(f, self.shim / f.name)
            shutil.copy(SX127X, self.shim / "sx127x.py")
            (self.shim / "gate_config.py").write_text(
                f"BOARD_ID = {board_id!r}\nRADIO_PINS = {radio_pins!r}\n"
                f"PINS_LOW = {tuple(pins_low)!r}\nWIFI_NETWORKS = {{}}\nNVM = b''\n"
                f"NVM_FILE = {str(self.nvm_file)!r}\nSLEEP_FILE = {str(self.sleep_file)!r}\n"
                f"LINK = ('127.0.0.1', {self.link.port})\n")
        if code is not None:
            (self.fs / "code.py").write_text(code)
        self.proc: subprocess.Popen[bytes] | None = None
        self.output = bytearray()  # everything the VM printed (tests read it)
        self._out_lock = threading.Condition()
        self._masters: list[int] = []
        self._vm_slave = -1
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.port = ""

    def _spawn(self) -> None:
        argv = [str(MICROPYTHON), "-X", f"heapsize={self.heap}"]
        if self.link is not None:
            # CircuitPython's sys.path: the drive's root, then its lib/ (the stand-ins are
            # the board's built-in modules); code.py runs as CircuitPython runs it.
            argv += ["-i", "-c", "import launch"]
            env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "GATE_MAIN": "code.py",
                   "MICROPYPATH": f"{self.fs}:{self.fs}/lib:{self.shim}"}
        else:
            if (self.fs / "code.py").is_file():
                argv += ["-i", "code.py"]
            env = dict(os.environ, MICROPYPATH=f"{self.shim}:.frozen")
        self.proc = subprocess.Popen(
            [sys.executable, "-c", SUPERVISOR, str(self._vm_slave), str(self.fs), *argv],
            env=env, stdin=subprocess.DEVNULL, pass_fds=(self._vm_slave,),
            start_new_session=True)

    @property
    def boots(self) -> int:
        """VM starts: the first plus one per soft reboot."""
        return 1 + bytes(self.output).count(b"soft reboot")

    def start(self) -> MpBoard:
        """Power on: sleep memory cleared, boot.py (hardware mode) and code.py run."""
        if self.link is not None:
            self.sleep_file.write_bytes(bytes(4096))
            if (self.fs / "boot.py").is_file():
                r = subprocess.run([str(MICROPYTHON), "-X", f"heapsize={self.heap}", "-c",
                                    "import launch"], cwd=self.fs, capture_output=True,
                                   text=True, timeout=30,
                                   env={"GATE_MAIN": "boot.py",
                                        "MICROPYPATH": f"{self.fs}:{self.fs}/lib:{self.shim}"})
                if r.returncode != 0 or "Traceback" in r.stdout + r.stderr:
                    raise RuntimeError(f"boot.py failed: {r.stdout}{r.stderr}")
        vm_master, vm_slave = os.openpty()
        # Like USB CDC: no output processing; but keep ISIG, because the unix port turns the
        # Ctrl-C it reads while running code into SIGINT via the tty (a board does it in its
        # USB stack).
        tty.setraw(vm_slave)
        attrs = termios.tcgetattr(vm_slave)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(vm_slave, termios.TCSANOW, attrs)
        self._vm_slave = vm_slave  # kept open: the VM restarts on it after a soft reboot
        host_master, host_slave = os.openpty()
        tty.setraw(host_slave)
        self.port = os.ttyname(host_slave)
        os.close(host_slave)  # the host opens it again by path
        self._masters = [vm_master, host_master]
        self._spawn()
        if not (self.fs / "code.py").is_file():
            # Until the VM shows its prompt it has not put the tty in raw mode: wait for ">>> ".
            seen = b""
            deadline = time.monotonic() + 10
            while not seen.endswith(b">>> ") and time.monotonic() < deadline:
                ready, _, _ = select.select([vm_master], [], [], 0.1)
                if ready:
                    seen += os.read(vm_master, 4096)
            if not seen.endswith(b">>> "):
                self.stop()
                raise RuntimeError(f"micropython did not start: {seen!r}")
        self._threads = [threading.Thread(target=self._relay, daemon=True)]
        for t in self._threads:
            t.start()
        return self

    def _relay(self) -> None:
        vm, host = self._masters
        peer = {vm: host, host: vm}
        closed_until = {vm: 0.0, host: 0.0}
        while not self._stop.is_set():
            now = time.monotonic()
            watch = [fd for fd in (vm, host) if closed_until[fd] <= now]
            try:
                timeout = 0.05 if len(watch) == 2 else CLOSED_POLL_S
                ready, _, _ = select.select(watch, [], [], timeout)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    # EIO: nobody has the other side open for now (the host port between
                    # two tools). A closed side stays readable: look again a little later,
                    # not in a busy loop.
                    data = b""
                    closed_until[fd] = time.monotonic() + CLOSED_POLL_S
                if data:
                    if fd == vm:
                        with self._out_lock:
                            self.output += data
                            self._out_lock.notify_all()
                    try:
                        os.write(peer[fd], data)
                    except OSError:
                        pass

    def wait_output(self, needle: bytes, start: int = 0, timeout: float = 10.0) -> bool:
        """True once ``needle`` appears in the VM's output after offset ``start``."""
        end = time.monotonic() + timeout
        with self._out_lock:
            while needle not in self.output[start:]:
                left = end - time.monotonic()
                if left <= 0:
                    return False
                self._out_lock.wait(min(left, 0.1))
            return True

    def nvm(self) -> bytes:
        return self.nvm_file.read_bytes()

    def lines(self) -> list[str]:
        """The console's complete lines so far (a line still being printed is not one)."""
        return bytes(self.output).decode("utf-8", "replace").replace("\r", "").split("\n")[:-1]

    def wait_line(self, pred, timeout: float = 10.0, start: int = 0) -> str | None:
        """The first console line from line ``start`` on for which ``pred`` is true,
        waiting up to ``timeout`` s (complete lines only)."""
        end = time.monotonic() + timeout
        with self._out_lock:
            while True:
                for ln in self.lines()[start:]:
                    if pred(ln):
                        return ln
                left = end - time.monotonic()
                if left <= 0:
                    return None
                self._out_lock.wait(min(left, 0.1))

    # -- the person at the board (hardware mode) ------------------------------------------
    def press(self, seconds: float = 2.0, pin: str = "D5") -> None:
        """Hold the button (a switch to GND) for ``seconds``."""
        assert self.link is not None, "press() needs hardware mode (air=...)"
        self.link.drive(pin, False)
        try:
            time.sleep(seconds)  # the hold itself: what the person does
        finally:
            self.link.drive(pin, True)

    def click(self, times: int, hold: float = 0.15, gap: float = 0.3) -> None:
        for i in range(times):
            self.press(hold)
            if i + 1 < times:
                time.sleep(gap)

    def test(self) -> None:
        """The TEST pattern: 5 quick presses."""
        self.click(5)

    def stop(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()  # the supervisor kills its VM, then exits
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        for fd in [*self._masters, self._vm_slave]:
            try:
                if fd >= 0:
                    os.close(fd)
            except OSError:
                pass
        self._masters = []
        self._vm_slave = -1
        if self.link is not None:
            self.link.close()
