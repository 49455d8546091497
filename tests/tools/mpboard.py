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
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import termios
import threading
import time
import tty
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
MICROPYTHON = ROOT / ".venv" / "bin" / "micropython"

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


class MpBoard:
    """Start with ``start()``; ``port`` is the path to open; ``stop()`` cleans everything."""

    def __init__(self, tmp: Path, board_id: str = "adafruit_feather_rp2040_rfm",
                 nvm_size: int = 8192, code: str | None = None) -> None:
        self.fs = tmp / "board"
        self.fs.mkdir()
        self.shim = tmp / "shim"
        self.shim.mkdir()
        self.nvm_file = tmp / "nvm.bin"
        self.nvm_file.write_bytes(b"\xff" * nvm_size)
        (self.shim / "microcontroller.py").write_text(
            MICROCONTROLLER % {"nvm": str(self.nvm_file), "size": nvm_size})
        (self.shim / "board.py").write_text(f"board_id = {board_id!r}\n")
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
        argv = [str(MICROPYTHON), "-X", "heapsize=256k"]
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
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([vm, host], [], [], 0.05)
            except (OSError, ValueError):
                return
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    data = b""  # EIO: the other side is closed for now
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
