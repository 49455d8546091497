"""`panictool flash`: put CircuitPython, the firmware and its libraries onto a board.

Copying goes through the CIRCUITPY drive (the board's own filesystem is read-only to code
while the computer has it mounted); verification goes through the serial raw REPL, so it
proves what the board itself reads back, not what the computer's cache says.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from pathlib import Path
from typing import Any

import typer

from panicimage import manifest
from panictool import common, drives
from panictool.transport import TransportError
from panictool.transport_serial import SerialTransport, auto_port

CHUNK = 64 * 1024

EPILOG = """\
Examples:

  panictool flash                              # button firmware onto the one CIRCUITPY drive
  panictool flash --role bridge --port /dev/ttyACM0
  panictool flash --uf2 adafruit-circuitpython-feather_rp2040_rfm-en_US-9.2.1.uf2
  panictool flash --dry-run --json             # what would be copied, for scripts

Exit codes: 0 done and verified; 1 files on the board differ after copying; 3 no drive,
wrong board or CircuitPython version, bad .uf2; 4 serial port problem during verification;
5 cannot write to the drive (full, read-only).
"""


def _write_file(dest: Path, data: bytes, advance: Any) -> None:
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".tmp")
    with open(tmp, "wb") as f:
        for i in range(0, len(data), CHUNK):
            f.write(data[i:i + CHUNK])
            advance(len(data[i:i + CHUNK]))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, dest)


def _sha(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def install_uf2(uf2: Path, uf2_drive: Path | None, as_json: bool) -> drives.Uf2Drive:
    """Copy a CircuitPython .uf2 onto the boot drive (the board reboots when it has it)."""
    try:
        data = uf2.read_bytes()
    except OSError as e:
        common.fail(common.USAGE, f"cannot read {uf2}: {e.strerror}", as_json=as_json)
    try:
        family = drives.uf2_family(data)
        if uf2_drive is not None:
            boot = drives.read_uf2_drive(uf2_drive)
        else:
            found = drives.find_uf2()
            if not found:
                common.fail(common.DRIVE, "no UF2 boot drive found",
                            "double-press the board's reset button; a drive such as RPI-RP2 "
                            "or FTHRS3BOOT appears", as_json)
            if len(found) > 1:
                common.fail(common.DRIVE, "several UF2 boot drives: "
                            + ", ".join(str(d.path) for d in found),
                            "unplug the others or pass --uf2-drive", as_json)
            boot = found[0]
    except drives.DriveError as e:
        common.fail(common.DRIVE, str(e), as_json=as_json)
    if family and boot.chip and family != boot.chip:
        common.fail(common.DRIVE, f"{uf2.name} is for {family} but the board in boot mode is "
                    f"{boot.chip} ({boot.model})",
                    "download the .uf2 for this board from circuitpython.org", as_json)
    with common.byte_progress(as_json) as prog:
        task = prog.add_task(f"CircuitPython -> {boot.path}", total=len(data))
        target = boot.path / uf2.name
        try:
            with open(target, "wb") as f:
                for i in range(0, len(data), CHUNK):
                    f.write(data[i:i + CHUNK])
                    prog.advance(task, len(data[i:i + CHUNK]))
                f.flush()
                os.fsync(f.fileno())
        except OSError as e:
            # The bootloader resets the board as soon as the last block lands, so the drive
            # may vanish under the final flush: only an early failure is an error.
            if prog.tasks[0].completed < len(data):
                common.fail(common.FILES, f"writing {target} failed: {e.strerror}",
                            "try another USB cable or port", as_json)
    return boot


def wait_for_circuitpy(drive: Path | None, wait_s: float, quiet: bool = False
                       ) -> drives.CircuitPyDrive | None:
    """Poll until CIRCUITPY (``drive`` or any in the mount table) shows a boot_out.txt,
    showing how long it has waited (the board flashes and reboots: up to a minute)."""
    start = time.monotonic()
    end = start + wait_s
    with common.waiting("CircuitPython is installing; waiting for CIRCUITPY", wait_s,
                        quiet) as tick:
        while True:
            try:
                if drive is not None:
                    if (drive / "boot_out.txt").is_file():
                        return drives.read_circuitpy(drive)
                else:
                    found = drives.find_circuitpy()
                    if len(found) == 1:
                        return found[0]
            except (OSError, drives.DriveError):
                pass
            if time.monotonic() >= end:
                return None
            time.sleep(0.25)
            tick(time.monotonic() - start)


def pick_circuitpy(drive: Path | None, as_json: bool) -> drives.CircuitPyDrive:
    try:
        if drive is not None:
            return drives.read_circuitpy(drive)
        found = drives.find_circuitpy()
    except drives.DriveError as e:
        common.fail(common.DRIVE, str(e), as_json=as_json)
    if not found:
        uf2 = drives.find_uf2()
        hint = ("the board is in its bootloader: install CircuitPython with "
                "`panictool flash --uf2 FILE.uf2`" if uf2 else
                "plug the board in with a data cable (not a charge-only one) and wait for the "
                "CIRCUITPY drive, or pass --drive")
        common.fail(common.DRIVE, "no CIRCUITPY drive found", hint, as_json)
    if len(found) > 1:
        common.fail(common.DRIVE, "several CIRCUITPY drives: "
                    + ", ".join(str(d.path) for d in found),
                    "unplug the others or pass --drive", as_json)
    return found[0]


def check_board(cp: drives.CircuitPyDrive, role: str, as_json: bool) -> None:
    ids = manifest.board_ids(role)
    if cp.board_id not in ids:
        common.fail(common.DRIVE, f"{cp.path} is a {cp.board_id}, not a board for the {role} "
                    f"firmware (expected {', '.join(ids)})",
                    "plug in the right board, or pick --role", as_json,
                    {"board_id": cp.board_id})
    if cp.major not in manifest.SUPPORTED_MAJORS:
        majors = " or ".join(str(m) for m in manifest.SUPPORTED_MAJORS)
        common.fail(common.DRIVE, f"the board runs CircuitPython {cp.version_text}; the firmware "
                    f"needs CircuitPython {majors}.x",
                    "install a supported version with `panictool flash --uf2 FILE.uf2` "
                    "(double-press reset first)", as_json, {"version": cp.version_text})


def verify_over_serial(port: str | None, entries: list[manifest.FileEntry],
                       as_json: bool, copied: list[str]) -> tuple[str, list[dict[str, Any]]]:
    """Hash every manifest file on the board; (port used, list of mismatches). A serial
    failure says what this run already copied, so the installer knows the drive's state."""
    bad: list[dict[str, Any]] = []
    try:
        used = port or auto_port()
        with SerialTransport(used) as t, common.count_progress(as_json) as prog:
            task = prog.add_task("verifying on the board", total=len(entries))
            for e in entries:
                got = t.sha256(e.dest)
                if got != e.sha256:
                    bad.append({"file": e.dest, "expected": e.sha256, "found": got})
                prog.advance(task)
    except TransportError as e:
        if copied:
            shown = ", ".join(copied[:8]) + (f" and {len(copied) - 8} more"
                                             if len(copied) > 8 else "")
            done = f"; the {len(copied)} files copied before it are on CIRCUITPY: {shown}"
        else:
            done = "; no file was copied (the drive already had them all)"
        common.fail(common.SERIAL, f"verification over serial failed: {e}{done}",
                    (e.hint + "; then " if e.hint else "") + "run `panictool flash` again: "
                    "it copies only what differs and verifies everything",
                    as_json, {"copied": copied, "verified": False})
    return used, bad


def flash(
    role: str = typer.Option("button", "--role", help="button or bridge firmware."),
    drive: Path | None = typer.Option(None, "--drive", help="CIRCUITPY mount point "
                                      "(default: found in the mount table)."),
    port: str | None = typer.Option(None, "--port", help="Serial console port for "
                                    "verification (default: the USB device with vendor 0x239A)."),
    uf2: Path | None = typer.Option(None, "--uf2", help="Install CircuitPython from this .uf2 "
                                    "first (the board must show its UF2 boot drive)."),
    uf2_drive: Path | None = typer.Option(None, "--uf2-drive", help="UF2 boot drive mount "
                                          "point (default: found by INFO_UF2.TXT)."),
    wait_s: float = typer.Option(90.0, "--wait", help="Seconds to wait for CIRCUITPY after "
                                 "installing CircuitPython."),
    no_verify: bool = typer.Option(False, "--no-verify", help="Skip hashing the files over "
                                   "serial (e.g. no serial access)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be copied; change "
                                 "nothing."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON result for scripts."),
) -> None:
    """Copy the button or bridge firmware and its libraries onto a CircuitPython board.

    Finds the CIRCUITPY drive, refuses a board or CircuitPython version the firmware does
    not support, copies only files that changed (libraries first, code.py last), removes
    stale files of our own packages, syncs, then hashes every file on the board over the
    serial raw REPL and compares with the manifest.
    """
    if role not in manifest.ROLES:
        common.fail(common.USAGE, f"--role must be one of {', '.join(manifest.ROLES)}",
                    as_json=as_json)
    try:
        entries = manifest.build(role)
    except manifest.ManifestError as e:
        common.fail(common.FILES, str(e), as_json=as_json)
    result: dict[str, Any] = {"ok": True, "role": role,
                              "firmware": manifest.firmware_version(role)}
    if uf2 is not None:
        if dry_run:
            try:
                result["uf2_family"] = drives.uf2_family(uf2.read_bytes())
            except (OSError, drives.DriveError) as e:
                common.fail(common.DRIVE, f"{uf2}: {e}", as_json=as_json)
        else:
            boot = install_uf2(uf2, uf2_drive, as_json)
            result["circuitpython_installed"] = {"uf2": uf2.name, "boot_drive": str(boot.path)}
            if not as_json:
                typer.echo(f"CircuitPython copied to {boot.path}")
            if wait_for_circuitpy(drive, wait_s, as_json) is None:
                common.fail(common.DRIVE, f"CIRCUITPY did not appear within {wait_s:.0f} s",
                            "unplug and replug the board; if only the boot drive comes back "
                            "the .uf2 is for another board", as_json)
    cp = pick_circuitpy(drive, as_json)
    check_board(cp, role, as_json)
    result.update({"drive": str(cp.path), "board_id": cp.board_id,
                   "circuitpython": cp.version_text})
    changed = [e for e in entries if _sha(cp.path / e.dest) != e.sha256]
    stale = manifest.stale_files(cp.path, role, entries)
    man = manifest.manifest_json(role, entries)
    man_changed = _sha(cp.path / manifest.MANIFEST_NAME) != hashlib.sha256(man).hexdigest()
    need = sum(e.size for e in changed) + (len(man) if man_changed else 0)
    result.update({"files": len(entries), "copy": [e.dest for e in changed],
                   "unchanged": len(entries) - len(changed), "remove": stale,
                   "bytes": sum(e.size for e in changed), "manifest_written": man_changed})
    if dry_run:
        result["dry_run"] = True
        _report(result, as_json)
        return
    free = shutil.disk_usage(cp.path).free
    reclaim = sum((cp.path / e.dest).stat().st_size for e in changed
                  if (cp.path / e.dest).is_file())
    if need - reclaim > free:
        common.fail(common.FILES, f"{cp.path} has {free} bytes free; the firmware needs "
                    f"{need - reclaim} more", "delete old files from CIRCUITPY (keep "
                    "settings.toml) and retry", as_json)
    copied: list[str] = []
    try:
        for rel in stale:
            (cp.path / rel).unlink()
        with common.byte_progress(as_json) as prog:
            task = prog.add_task(f"copying to {cp.path}", total=need)
            for e in changed:
                _write_file(cp.path / e.dest, e.src.read_bytes(),
                            lambda n: prog.advance(task, n))
                copied.append(e.dest)
            if man_changed:
                _write_file(cp.path / manifest.MANIFEST_NAME, man,
                            lambda n: prog.advance(task, n))
        drives.sync(cp.path)
    except OSError as e:
        common.fail(common.FILES, f"writing to {cp.path} failed after {len(copied)} of "
                    f"{len(changed)} files: {e.strerror or e}",
                    "check that CIRCUITPY is not full or read-only (a boot.py that remounts "
                    "it for the board makes it read-only for the computer), then run "
                    "`panictool flash` again", as_json, {"copied": copied})
    if no_verify:
        result["verified"] = False
    else:
        used, bad = verify_over_serial(port, entries, as_json, [e.dest for e in changed])
        result.update({"verified": not bad, "port": used, "mismatches": bad})
        if bad:
            result["ok"] = False
            _report(result, as_json)
            raise typer.Exit(common.CHECK_FAILED)
    _report(result, as_json)


def _report(r: dict[str, Any], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps(r))
        return
    head = "would copy" if r.get("dry_run") else "copied"
    typer.echo(f"{r['drive']}: {r['board_id']}, CircuitPython {r['circuitpython']}")
    if r["copy"]:
        what = (f"{head} {len(r['copy'])} of {r['files']} files ({r['bytes']} bytes), "
                f"{r['unchanged']} already up to date")
    else:
        what = f"all {r['files']} files already up to date, nothing {head}"
    typer.echo(f"{r['role']} firmware {r['firmware']}: {what}; removed "
               f"{len(r['remove'])} stale")
    for rel in r["remove"]:
        typer.echo(f"  remove {rel}")
    if r.get("dry_run"):
        for rel in r["copy"]:
            typer.echo(f"  copy {rel}")
        return
    if r.get("verified"):
        typer.echo(f"verified over {r['port']}: all {r['files']} files match")
    elif "mismatches" in r:
        typer.echo(f"VERIFY FAILED over {r['port']}: {len(r['mismatches'])} files differ:")
        for m in r["mismatches"]:
            typer.echo(f"  {m['file']}: {'missing' if m['found'] is None else 'different'}")
        typer.echo("  what to do: run `panictool flash` again; if it repeats, the drive may be "
                   "failing (`storage.erase_filesystem()` in the REPL wipes it)")
    else:
        typer.echo("not verified (--no-verify)")


FLASH = common.command_help(flash, EPILOG)
