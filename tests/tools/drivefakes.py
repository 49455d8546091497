"""Directories that look like a CircuitPython board's drives, and a mount table naming them."""

from __future__ import annotations

import struct
from pathlib import Path

BOOT_OUT = ("Adafruit CircuitPython {version} on 2024-11-20; Adafruit Feather RP2040 RFM with "
            "rp2040\nBoard ID:{board}\nUID:E4629C9B8C3B2A29\nboot.py output:\n")


def make_circuitpy(path: Path, board: str = "adafruit_feather_rp2040_rfm",
                   version: str = "9.2.1") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "boot_out.txt").write_text(BOOT_OUT.format(version=version, board=board))
    (path / "lib").mkdir(exist_ok=True)
    return path


def make_uf2_drive(path: Path, board_id: str = "RPI-RP2") -> Path:
    path.mkdir(parents=True, exist_ok=True)
    (path / "INFO_UF2.TXT").write_text(
        f"UF2 Bootloader v3.0\nModel: Raspberry Pi RP2\nBoard-ID: {board_id}\n")
    (path / "INDEX.HTM").write_text("<html></html>\n")
    return path


def uf2_image(family: int = 0xE48BFF56, blocks: int = 4) -> bytes:
    out = bytearray()
    for i in range(blocks):
        head = struct.pack("<IIIIIIII", 0x0A324655, 0x9E5D5157, 0x2000, 0x10000000 + 256 * i,
                           256, i, blocks, family)
        out += head + bytes([i]) * 256 + bytes(476 - 256) + struct.pack("<I", 0x0AB16F30)
    return bytes(out)


def mount_table(path: Path, mounts: list[Path]) -> Path:
    lines = ["proc /proc proc rw 0 0"]
    for m in mounts:
        esc = str(m).replace("\\", "\\134").replace(" ", "\\040")
        lines.append(f"/dev/sdb1 {esc} vfat rw,nosuid,nodev 0 0")
    path.write_text("\n".join(lines) + "\n")
    return path
