"""A real MicroPython VM behind a pseudo-terminal, standing in for a CircuitPython board.

``micropython`` runs with a pty slave as its stdin/stdout (so it offers the raw REPL and
raw-paste), its working directory standing in for the board's filesystem, and shim
``microcontroller``/``board`` modules on MICROPYPATH (``nvm`` persisted to a file). pyserial
needs a device path, and the VM's pty master has none, so a relay thread joins the VM's pty
master to a second pty whose slave path the host opens like /dev/ttyACM0.
"""

from __future__ import annotations

import fcntl
import os
import select
import signal
import subprocess
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


def _controlling_tty() -> None:
    """In the child: a new session with the pty (stdin) as controlling terminal, so the
    tty turns a Ctrl-C into SIGINT for the VM as a terminal would."""
    os.setsid()
    fcntl.ioctl(0, termios.TIOCSCTTY, 0)


class MpBoard:
    """Start with ``start()``; ``port`` is the path to open; ``stop()`` cleans everything."""

    def __init__(self, tmp: Path, board_id: str = "adafruit_feather_rp2040_rfm",
                 nvm_size: int = 8192) -> None:
        self.fs = tmp / "board"
        self.fs.mkdir()
        self.shim = tmp / "shim"
        self.shim.mkdir()
        self.nvm_file = tmp / "nvm.bin"
        self.nvm_file.write_bytes(b"\xff" * nvm_size)
        (self.shim / "microcontroller.py").write_text(
            MICROCONTROLLER % {"nvm": str(self.nvm_file), "size": nvm_size})
        (self.shim / "board.py").write_text(f"board_id = {board_id!r}\n")
        self.proc: subprocess.Popen[bytes] | None = None
        self._masters: list[int] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self.port = ""

    def start(self) -> MpBoard:
        vm_master, vm_slave = os.openpty()
        # Like USB CDC: no output processing; but keep ISIG, because the unix port turns the
        # Ctrl-C it reads while running code into SIGINT via the tty (a board does it in its
        # USB stack).
        tty.setraw(vm_slave)
        attrs = termios.tcgetattr(vm_slave)
        attrs[3] |= termios.ISIG
        termios.tcsetattr(vm_slave, termios.TCSANOW, attrs)
        host_master, host_slave = os.openpty()
        tty.setraw(host_slave)
        self.port = os.ttyname(host_slave)
        env = dict(os.environ, MICROPYPATH=f"{self.shim}:.frozen")
        self.proc = subprocess.Popen(
            [str(MICROPYTHON), "-X", "heapsize=256k"], stdin=vm_slave, stdout=vm_slave,
            stderr=vm_slave, cwd=self.fs, env=env, preexec_fn=_controlling_tty)
        os.close(vm_slave)
        os.close(host_slave)  # the host opens it again by path
        self._masters = [vm_master, host_master]
        # Until the VM shows its prompt it has not put the tty in raw mode, and a Ctrl-C
        # then would kill it (SIGINT before its handler exists): wait for ">>> ".
        seen = b""
        deadline = time.monotonic() + 10
        while not seen.endswith(b">>> ") and time.monotonic() < deadline:
            ready, _, _ = select.select([vm_master], [], [], 0.1)
            if ready:
                seen += os.read(vm_master, 4096)
        if not seen.endswith(b">>> "):
            self.stop()
            raise RuntimeError(f"micropython did not start: {seen!r}")
        self._thread = threading.Thread(target=self._relay, daemon=True)
        self._thread.start()
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
                    try:
                        os.write(peer[fd], data)
                    except OSError:
                        pass

    def nvm(self) -> bytes:
        return self.nvm_file.read_bytes()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)
        for fd in self._masters:
            try:
                os.close(fd)
            except OSError:
                pass
        self._masters = []
