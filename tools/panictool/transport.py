"""File and NVM operations on a CircuitPython/MicroPython board, built on two primitives.

A concrete transport (``transport_serial.SerialTransport``) only has to provide
``exec_raw(code) -> (stdout, stderr)``; everything here is Python source sent to the board's
raw REPL. The snippets run on CircuitPython and MicroPython alike (``hashlib.sha256`` or
``hashlib.new("sha256")``; ``binascii`` for binary data). Nothing here logs the bytes it
writes: NVM writes carry the device key.
"""

from __future__ import annotations

import abc
import ast
import binascii
import errno
import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

CHUNK = 512  # bytes per exec when reading or writing files


class TransportError(Exception):
    """The board is unreachable or not a raw REPL; ``hint`` says what to do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class DeviceError(TransportError):
    """Code ran on the board and raised; ``errno`` is set for OSError."""

    def __init__(self, message: str, errno_: int | None = None) -> None:
        super().__init__(message)
        self.errno = errno_


@dataclass
class Entry:
    """One directory entry on the board."""

    name: str
    is_dir: bool
    size: int


def _pystr(s: str) -> str:
    """A Python literal for ``s`` that the board's parser accepts (repr is enough for str)."""
    return repr(s)


_OSERROR = re.compile(r"OSError: (?:\[Errno (\d+)\]|(\d+))")


def _parse_oserror(stderr: str) -> int | None:
    """errno of the last ``OSError`` in a board traceback (MicroPython and CircuitPython forms)."""
    found = _OSERROR.findall(stderr)
    if not found:
        return None
    a, b = found[-1]
    return int(a or b)


_SHA = (
    "try:\n from hashlib import sha256 as _h\n _H=lambda:_h()\n"
    "except ImportError:\n import hashlib as _hl\n _H=lambda:_hl.new('sha256')\n"
)


class Transport(abc.ABC):
    """File operations over ``exec_raw``; subclasses implement the connection."""

    @abc.abstractmethod
    def exec_raw(self, code: str, timeout: float = 10.0) -> tuple[bytes, bytes]:
        """Run ``code`` on the board; (stdout, stderr) of that run."""

    # -- the two primitives -------------------------------------------------------------------

    def exec(self, code: str, timeout: float = 10.0) -> str:
        """Run ``code``; its printed output. A traceback on the board raises DeviceError."""
        out, err = self.exec_raw(code, timeout)
        if err:
            text = err.decode("utf-8", "replace").strip()
            raise DeviceError(text.splitlines()[-1] if text else "error", _parse_oserror(text))
        return out.decode("utf-8", "replace")

    def eval(self, expr: str, timeout: float = 10.0) -> Any:
        """Value of ``expr`` on the board (anything whose repr is a Python literal)."""
        text = self.exec(f"print(repr({expr}))", timeout).strip()
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise TransportError(f"board answered something unexpected: {text[:80]!r}") from None

    # -- board identity ---------------------------------------------------------------------------

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

    # -- files ------------------------------------------------------------------------------------

    def ls(self, path: str = "/") -> list[Entry]:
        code = (
            "import os\n"
            f"_p={_pystr(path)}\n"
            "for _e in os.ilistdir(_p):\n"
            " _n=_e[0]\n"
            " _d=_e[1]&0x4000!=0\n"
            " _s=0 if _d else os.stat((_p.rstrip('/') or '')+'/'+_n)[6]\n"
            " print(repr((_n,_d,_s)))\n"
        )
        out = self.exec(code)
        entries = []
        for line in out.splitlines():
            if line.strip():
                name, is_dir, size = ast.literal_eval(line.strip())
                entries.append(Entry(name, bool(is_dir), int(size)))
        return sorted(entries, key=lambda e: e.name)

    def stat_size(self, path: str) -> int | None:
        """Size of a file, or None when it does not exist."""
        code = f"import os\ntry:\n print(os.stat({_pystr(path)})[6])\nexcept OSError:\n print(-1)\n"
        n = int(self.exec(code).strip())
        return None if n < 0 else n

    def read(self, path: str, progress: Callable[[int], None] | None = None) -> bytes:
        """Whole file contents, sent back as hex lines (binary-safe on any console)."""
        code = (
            "import binascii\n"
            f"with open({_pystr(path)},'rb') as _f:\n"
            " while True:\n"
            f"  _b=_f.read({CHUNK})\n"
            "  if not _b:\n   break\n"
            "  print(binascii.hexlify(_b).decode())\n"
        )
        out = self.exec(code, timeout=60.0)
        data = bytearray()
        for line in out.splitlines():
            line = line.strip()
            if line:
                data += binascii.unhexlify(line)
                if progress:
                    progress(len(line) // 2)
        return bytes(data)

    def write(self, path: str, data: bytes, progress: Callable[[int], None] | None = None) -> None:
        """Write a file in chunks. On CircuitPython this fails with EROFS while the CIRCUITPY
        drive is mounted by the computer: copy through the drive instead."""
        try:
            self.exec(f"_f=open({_pystr(path)},'wb')\nimport binascii\n")
        except DeviceError as e:
            if e.errno == errno.EROFS:
                raise DeviceError(
                    f"{path}: the board's filesystem is read-only while the computer has the "
                    "CIRCUITPY drive mounted; copy files through the drive", e.errno) from None
            raise
        try:
            for i in range(0, len(data), CHUNK):
                part = data[i:i + CHUNK]
                self.exec(f"_f.write(binascii.unhexlify({part.hex()!r}))\n")
                if progress:
                    progress(len(part))
        finally:
            self.exec("_f.close()\n")

    def sha256(self, path: str) -> str | None:
        """Hex SHA-256 of a file computed on the board (None when it does not exist).

        Boards without ``hashlib`` send the file back and it is hashed here.
        """
        code = _SHA + (
            "try:\n"
            f" _f=open({_pystr(path)},'rb')\n"
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
            return hashlib.sha256(self.read(path)).hexdigest()
        return None if out == "MISSING" else out

    def mkdir(self, path: str, exist_ok: bool = True) -> None:
        code = (
            "import os\n"
            f"try:\n os.mkdir({_pystr(path)})\n"
            "except OSError as _e:\n"
            f" if {not exist_ok!r} or _e.args[0]!=17:\n  raise\n"
        )
        self.exec(code)

    def makedirs(self, path: str) -> None:
        """mkdir -p."""
        parts = [p for p in path.split("/") if p]
        cur = "/" if path.startswith("/") else ""
        for p in parts:
            cur = f"{cur.rstrip('/')}/{p}" if cur else p
            self.mkdir(cur)

    def remove(self, path: str) -> None:
        self.exec(f"import os\nos.remove({_pystr(path)})\n")

    # -- NVM --------------------------------------------------------------------------------------

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
