"""Find a board's USB drives: CIRCUITPY (mount table + boot_out.txt) and the UF2 boot drive.

CircuitPython writes ``boot_out.txt`` at every boot: its first line names the version and
board, the second the board id. A UF2 bootloader drive holds ``INFO_UF2.TXT``. We look at
the mount table rather than at volume labels so renamed drives and odd mount points work.
"""

from __future__ import annotations

import os
import re
import struct
import sys
from dataclasses import dataclass
from pathlib import Path

MOUNTS = Path("/proc/self/mounts")
_VERSION = re.compile(r"CircuitPython (\d+)\.(\d+)\.(\d+)(\S*)")
_BOARD_ID = re.compile(r"^Board ID:\s*(\S+)", re.M)
UF2_MAGIC0 = 0x0A324655
UF2_MAGIC1 = 0x9E5D5157
UF2_FAMILY_FLAG = 0x00002000
# UF2 family ids of the chips we support, and how their bootloaders name themselves.
FAMILIES = {0xE48BFF56: "RP2040", 0xC47E5767: "ESP32-S3"}
BOOTLOADER_CHIPS = (("RPI-RP2", "RP2040"), ("ESP32S3", "ESP32-S3"), ("ESP32-S3", "ESP32-S3"))


class DriveError(Exception):
    """No usable drive, or the wrong one; the message says what to do."""


@dataclass
class CircuitPyDrive:
    path: Path
    board_id: str
    version: tuple[int, int, int]
    version_text: str

    @property
    def major(self) -> int:
        return self.version[0]


@dataclass
class Uf2Drive:
    path: Path
    model: str
    board_id: str

    @property
    def chip(self) -> str | None:
        for prefix, chip in BOOTLOADER_CHIPS:
            if self.board_id.upper().startswith(prefix):
                return chip
        return None


def _unescape(field: str) -> str:
    """Mount table fields escape space, tab, newline and backslash as octal."""
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def mount_points(mounts: Path | None = None) -> list[Path]:
    """Mounted directories (Linux mount table; /Volumes on macOS)."""
    table = mounts or MOUNTS
    if table.exists():
        out = []
        for line in table.read_text(errors="replace").splitlines():
            parts = line.split()
            if len(parts) >= 2:
                out.append(Path(_unescape(parts[1])))
        return out
    if sys.platform == "darwin":
        return sorted(Path("/Volumes").iterdir())
    return []


def read_circuitpy(path: Path) -> CircuitPyDrive:
    """Parse ``boot_out.txt``; DriveError when ``path`` is not a CIRCUITPY drive."""
    boot_out = path / "boot_out.txt"
    try:
        text = boot_out.read_text(errors="replace")
    except OSError:
        raise DriveError(f"{path} is not a CIRCUITPY drive (no boot_out.txt): is CircuitPython "
                         "installed? Use `panictool flash --uf2 FILE.uf2` to install it") from None
    v = _VERSION.search(text)
    b = _BOARD_ID.search(text)
    if not v or not b:
        raise DriveError(f"{boot_out} does not name a CircuitPython version and board id; "
                         "press reset once so CircuitPython rewrites it")
    version = (int(v.group(1)), int(v.group(2)), int(v.group(3)))
    text_version = f"{version[0]}.{version[1]}.{version[2]}{v.group(4)}"
    return CircuitPyDrive(path, b.group(1), version, text_version)


def read_uf2_drive(path: Path) -> Uf2Drive:
    info = path / "INFO_UF2.TXT"
    try:
        text = info.read_text(errors="replace")
    except OSError:
        raise DriveError(f"{path} is not a UF2 boot drive (no INFO_UF2.TXT): double-press the "
                         "board's reset button to get its boot drive") from None
    fields = {}
    for line in text.splitlines():
        if ":" in line:
            k, v = line.split(":", 1)
            fields[k.strip().lower()] = v.strip()
    return Uf2Drive(path, fields.get("model", "?"), fields.get("board-id", "?"))


def find_circuitpy(mounts: Path | None = None) -> list[CircuitPyDrive]:
    found = []
    for mp in mount_points(mounts):
        try:
            if (mp / "boot_out.txt").is_file():
                found.append(read_circuitpy(mp))
        except (OSError, DriveError):
            continue
    return found


def find_uf2(mounts: Path | None = None) -> list[Uf2Drive]:
    found = []
    for mp in mount_points(mounts):
        try:
            if (mp / "INFO_UF2.TXT").is_file():
                found.append(read_uf2_drive(mp))
        except (OSError, DriveError):
            continue
    return found


def uf2_family(data: bytes) -> str | None:
    """Chip family of a UF2 image (None when the block has no family id).

    Raises DriveError when ``data`` is not a UF2 file at all.
    """
    if len(data) < 512 or len(data) % 512:
        raise DriveError("not a UF2 file (size is not a multiple of 512 bytes)")
    m0, m1, flags = struct.unpack_from("<III", data, 0)
    if m0 != UF2_MAGIC0 or m1 != UF2_MAGIC1:
        raise DriveError("not a UF2 file (bad magic): download the .uf2 for your board from "
                         "circuitpython.org")
    if flags & UF2_FAMILY_FLAG:
        fam = struct.unpack_from("<I", data, 28)[0]
        return FAMILIES.get(fam, f"0x{fam:08X}")
    return None


def sync(path: Path) -> None:
    """Flush the drive's writes (the board resets or reloads on its own schedule)."""
    if hasattr(os, "sync"):
        os.sync()
