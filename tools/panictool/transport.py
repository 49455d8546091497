"""File and NVM operations on a CircuitPython/MicroPython board, on mpremote's transport.

As in mpremote (``mpremote.transport.Transport``), a concrete transport provides
``exec_raw(code) -> (stdout, stderr)`` and everything here is Python source run in the
board's raw REPL. Reading, writing, stat, mkdir and remove are mpremote's own ``fs_*``
operations; this class adds what they lack for a panic button:

* ``exec``/``eval`` return text and raise :class:`DeviceError`, an mpremote
  ``TransportExecError`` (so mpremote's file operations still recognise it) that also
  carries the errno. CircuitPython prints ``OSError: [Errno 2] No such file/directory``,
  a number with a text and no errno name, which mpremote's ``_convert_filesystem_error``
  does not read (it matches MicroPython's ``ENOENT``-style names or a bare number); both
  forms come out as a DeviceError with ``errno`` set.
* ``ls`` lists with ``os.listdir`` and ``os.stat``: CircuitPython has no
  ``os.ilistdir``, which mpremote's ``fs_listdir`` needs.
* ``sha256`` hashes on the board with ``hashlib.new("sha256")`` where there is no
  ``hashlib.sha256`` (CircuitPython has only ``new``); mpremote's ``fs_hashfile`` calls
  ``hashlib.sha256()`` and so would copy every file back to hash it here. Boards without
  hashlib at all do get mpremote's ``fs_hashfile``, which does exactly that.
* ``board_info`` and the NVM reads and writes: CircuitPython's ``board.board_id`` and
  ``microcontroller.nvm``, which mpremote does not know.

Nothing here logs the bytes it writes: NVM writes carry the device key.
"""

from __future__ import annotations

import ast
import binascii
import errno
import os
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

from mpremote import transport as mp

CHUNK = 512  # bytes per exec when reading or writing files

T = TypeVar("T")


class TransportError(mp.TransportError):
    """The board is unreachable or not a raw REPL; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        # Not super().__init__: in DeviceError's MRO the next class is mpremote's
        # TransportExecError, whose __init__ takes other arguments.
        Exception.__init__(self, message)
        self.hint = hint


class DeviceError(TransportError, mp.TransportExecError):
    """Code ran on the board and raised; ``errno`` is set for OSError. ``error_output``
    (the whole traceback) and ``status_code`` (stdout) are what mpremote reads."""

    def __init__(self, message: str, errno_: int | None = None, error_output: str = "",
                 stdout: bytes = b"") -> None:
        super().__init__(message)
        self.errno = errno_
        self.error_output = error_output or message
        self.status_code = stdout


@dataclass
class Entry:
    """One directory entry on the board."""

    name: str
    is_dir: bool
    size: int


_OSERROR = re.compile(r"OSError: (?:\[Errno (\d+)\]|(\d+))")


def _parse_oserror(stderr: str) -> int | None:
    """errno of the last ``OSError`` in a board traceback, in MicroPython's
    (``[Errno 2] ENOENT``, ``OSError: 2``) and CircuitPython's (``[Errno 2] No such
    file/directory``) forms."""
    found = _OSERROR.findall(stderr)
    if not found:
        return None
    a, b = found[-1]
    return int(a or b)


def _deltas(progress: Callable[[int], None] | None) -> Callable[[int, int], None] | None:
    """mpremote's progress callback (done, total) as ours (bytes since the last call)."""
    if progress is None:
        return None
    last = 0

    def report(done: int, _total: int) -> None:
        nonlocal last
        progress(done - last)
        last = done

    return report


_SHA = (
    "try:\n from hashlib import sha256 as _h\n _H=lambda:_h()\n"
    "except ImportError:\n import hashlib as _hl\n _H=lambda:_hl.new('sha256')\n"
)


class Transport(mp.Transport):
    """mpremote's file operations with a panic button's errors and additions."""

    # -- the two primitives (over the subclass's exec_raw) ----------------------------

    def exec(self, code: str, timeout: float = 10.0,
             data_consumer: Callable[[bytes], None] | None = None) -> str:
        """Run ``code``; its printed output. A traceback on the board raises DeviceError."""
        out, err = self.exec_raw(code, timeout, data_consumer)  # type: ignore[attr-defined]
        if err:
            text = err.decode("utf-8", "replace").strip()
            raise DeviceError(text.splitlines()[-1] if text else "error", _parse_oserror(text),
                              text, out)
        return out.decode("utf-8", "replace")

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        """Value of ``expr`` on the board (anything whose repr is a Python literal)."""
        text = self.exec(f"print(repr({expr}))", timeout).strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise TransportError(f"board answered something unexpected: {text[:80]!r}") from None

    # -- board identity ---------------------------------------------------------------

    def board_info(self) -> dict[str, Any]:
        """board_id, implementation name and version tuple, and the NVM size (0 if none)."""
        code = (
            "import sys\n"
            "try:\n import board\n _b=board.board_id\nexcept Exception:\n _b=sys.platform\n"
            "try:\n import microcontroller\n _n=len(microcontroller.nvm)\n"
            "except Exception:\n _n=0\n"
            "print(repr((_b, sys.implementation.name, tuple(sys.implementation.version), _n)))\n"
        )
        text = self.exec(code).strip()
        try:
            board_id, impl, version, nvm = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise TransportError(f"board answered something unexpected: {text[:80]!r}") from None
        return {"board_id": board_id, "implementation": impl,
                "version": list(version), "nvm_size": nvm}

    # -- files ------------------------------------------------------------------------

    def _fs(self, op: Callable[..., T], path: str, *args: Any, **kw: Any) -> T:
        """An mpremote file operation; the OSError it makes of a board error it
        recognised comes back as a DeviceError, as the ones it did not recognise are."""
        try:
            return op(path, *args, **kw)
        except OSError as e:
            raise DeviceError(f"{path}: {os.strerror(e.errno or 0)}", e.errno) from None

    def ls(self, path: str = "/") -> list[Entry]:
        code = (
            "import os\n"
            f"_p={path!r}\n"
            "for _n in os.listdir(_p):\n"
            " _s=os.stat((_p.rstrip('/') or '')+'/'+_n)\n"
            " _d=_s[0]&0x4000!=0\n"
            " print(repr((_n,_d,0 if _d else _s[6])))\n"
        )
        entries = []
        for line in self.exec(code).splitlines():
            if line.strip():
                name, is_dir, size = ast.literal_eval(line.strip())
                entries.append(Entry(name, bool(is_dir), int(size)))
        return sorted(entries, key=lambda e: e.name)

    def stat_size(self, path: str) -> int | None:
        """Size of a file, or None when it does not exist."""
        try:
            return int(self._fs(self.fs_stat, path).st_size)
        except DeviceError as e:
            if e.errno is None:
                raise
            return None

    def read(self, path: str, progress: Callable[[int], None] | None = None) -> bytes:
        """Whole file contents (mpremote's reader: chunks sent back as bytes literals)."""
        return bytes(self._fs(self.fs_readfile, path, chunk_size=CHUNK,
                              progress_callback=_deltas(progress)))

    def write(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write a file in chunks. On CircuitPython this fails with EROFS while the CIRCUITPY
        drive is mounted by the computer: copy through the drive instead."""
        try:
            self._fs(self.fs_writefile, path, data, chunk_size=CHUNK,
                     progress_callback=_deltas(progress))
        except DeviceError as e:
            if e.errno == errno.EROFS:
                raise DeviceError(
                    f"{path}: the board's filesystem is read-only while the computer has the "
                    "CIRCUITPY drive mounted; copy files through the drive", e.errno) from None
            raise

    def sha256(self, path: str) -> str | None:
        """Hex SHA-256 of a file computed on the board (None when it does not exist)."""
        code = _SHA + (
            "try:\n"
            f" _f=open({path!r},'rb')\n"
            "except OSError:\n _f=None\n"
            "if _f is None:\n print('MISSING')\nelse:\n"
            " _x=_H()\n"
            " while True:\n"
            f"  _b=_f.read({CHUNK})\n"
            "  if not _b:\n   break\n"
            "  _x.update(_b)\n"
            " _f.close()\n"
            " import binascii\n"
            " print(binascii.hexlify(_x.digest()).decode())\n"
        )
        try:
            out = self.exec(code, timeout=60.0).strip()
        except DeviceError as e:
            if "hashlib" not in str(e) and "ImportError" not in str(e):
                raise
            if self.stat_size(path) is None:
                return None
            return self._fs(self.fs_hashfile, path, "sha256", chunk_size=CHUNK).hex()
        return None if out == "MISSING" else out

    def mkdir(self, path: str, exist_ok: bool = True) -> None:
        try:
            self._fs(self.fs_mkdir, path)
        except DeviceError as e:
            if not (exist_ok and e.errno == errno.EEXIST):
                raise

    def makedirs(self, path: str) -> None:
        """mkdir -p."""
        parts = [p for p in path.split("/") if p]
        cur = "/" if path.startswith("/") else ""
        for p in parts:
            cur = f"{cur.rstrip('/')}/{p}" if cur else p
            self.mkdir(cur)

    def remove(self, path: str) -> None:
        self._fs(self.fs_rmfile, path)

    # -- NVM --------------------------------------------------------------------------

    def nvm_read(self, offset: int, length: int) -> bytes:
        code = (
            "import microcontroller, binascii\n"
            f"print(binascii.hexlify(bytes(microcontroller.nvm[{offset}:{offset + length}]))"
            ".decode())\n"
        )
        return binascii.unhexlify(self.exec(code).strip())

    def nvm_write(self, offset: int, data: bytes) -> bool:
        """Write ``data`` at ``offset`` and read it back. False when it was already there
        (no flash write). The bytes are never echoed or logged."""
        size = int(self.eval("len(__import__('microcontroller').nvm)"))
        if offset < 0 or offset + len(data) > size:
            raise TransportError(f"NVM write {offset}+{len(data)} outside the board's {size} bytes")
        if self.nvm_read(offset, len(data)) == data:
            return False
        self.exec(
            "import microcontroller, binascii\n"
            f"microcontroller.nvm[{offset}:{offset + len(data)}]="
            f"binascii.unhexlify({data.hex()!r})\n"
        )
        if self.nvm_read(offset, len(data)) != data:
            raise TransportError("NVM write did not verify: the bytes read back differ",
                                 "try again; if it keeps failing the board's flash may be worn")
        return True
