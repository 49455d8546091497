"""``usb_cdc.data`` of a simulated bridge, exposed to the host as a pseudo-terminal.

``path`` is a stable symlink to the current pty, so a host can reopen it after
``unplug()``/``replug()`` like a USB serial device that comes back. ``connected`` is
true while a host has the port open (no POLLHUP on the master side), as DTR would be.
"""

import os
import select
import tempfile
import threading
import tty
from pathlib import Path


class PtySerial:
    def __init__(self, link_dir: str | None = None, name: str = "ttyBRIDGE") -> None:
        self._dir = Path(link_dir or tempfile.mkdtemp(prefix="panicsim-"))
        self.path = str(self._dir / name)
        self._lock = threading.Lock()
        self._master: int | None = None
        self.timeout = 0
        self.write_timeout = 0.2
        self.plug()

    def plug(self) -> None:
        with self._lock:
            if self._master is not None:
                return
            m, s = os.openpty()
            tty.setraw(s)
            target = os.ttyname(s)
            os.close(s)  # the host opens the slave by path
            os.set_blocking(m, False)
            tmp = self.path + ".new"
            if os.path.lexists(tmp):
                os.unlink(tmp)
            os.symlink(target, tmp)
            os.replace(tmp, self.path)
            self._master = m

    def unplug(self) -> None:
        with self._lock:
            if self._master is not None:
                os.close(self._master)  # the host's reads fail, as with a USB unplug
                self._master = None
            if os.path.lexists(self.path):
                os.unlink(self.path)

    def close(self) -> None:
        self.unplug()
        try:
            self._dir.rmdir()
        except OSError:
            pass

    @property
    def connected(self) -> bool:
        with self._lock:
            if self._master is None:
                return False
            p = select.poll()
            p.register(self._master, select.POLLIN | select.POLLHUP)
            for _, ev in p.poll(0):
                if ev & select.POLLHUP:
                    return False
            return True

    @property
    def in_waiting(self) -> int:
        with self._lock:
            if self._master is None:
                return 0
            r, _, _ = select.select([self._master], [], [], 0)
            return 4096 if r else 0

    def wait_readable(self, timeout: float) -> bool:
        """True when a read would return data or a hang-up (no host) within ``timeout``."""
        with self._lock:
            m = self._master
        if m is None:
            return False
        try:
            r, _, _ = select.select([m], [], [], timeout)
        except (OSError, ValueError):  # closed by unplug meanwhile
            return False
        return bool(r)

    def read(self, n: int = 1) -> bytes:
        with self._lock:
            if self._master is None:
                return b""
            try:
                data = os.read(self._master, n)
            except (BlockingIOError, OSError):
                return b""
            return data

    def write(self, data: bytes) -> int:
        with self._lock:
            if self._master is None:
                raise OSError(5, "USB unplugged")
            view = memoryview(bytes(data))
            total = 0
            while view:
                try:
                    n = os.write(self._master, view)
                except BlockingIOError:
                    _, w, _ = select.select([], [self._master], [], self.write_timeout)
                    if not w:
                        raise OSError(110, "write timeout") from None
                    continue
                total += n
                view = view[n:]
            return total
