"""`panictool flash` against directories that look like CIRCUITPY and a UF2 boot drive."""

from __future__ import annotations

import hashlib
import json
import threading
import time

import pytest
from drivefakes import make_circuitpy, make_uf2_drive, mount_table, uf2_image
from typer.testing import CliRunner

from panicimage import manifest
from panictool import drives
from panictool.cli import app

runner = CliRunner()


@pytest.fixture
def mounts(tmp_path, monkeypatch):
    """Point mount-table detection at a file the test controls."""
    table = tmp_path / "mounts"
    mount_table(table, [])
    monkeypatch.setattr(drives, "MOUNTS", table)
    return table


def run(*args: str):
    return runner.invoke(app, list(args))


def test_dry_run_changes_nothing(tmp_path, mounts):
    cp = make_circuitpy(tmp_path / "CIRCUIT PY")  # a space in the mount point
    mount_table(mounts, [tmp_path / "elsewhere", cp])
    r = run("flash", "--dry-run", "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["dry_run"] and doc["board_id"] == "adafruit_feather_rp2040_rfm"
    assert "code.py" in doc["copy"] and "lib/adafruit_rfm/rfm9x.py" in doc["copy"]
    assert "lib/asyncio/core.py" in doc["copy"] and "lib/adafruit_ticks.py" in doc["copy"]
    assert "lib/panicbutton/app.py" in doc["copy"]
    assert not any("rfm9x" in d and not d.startswith("lib/adafruit_rfm/") for d in doc["copy"])
    assert sorted(p.name for p in cp.iterdir()) == ["boot_out.txt", "lib"]


def test_copy_and_verify_over_the_raw_repl(mpboard):
    cp = make_circuitpy(mpboard.fs)
    (cp / "lib" / "panicbutton").mkdir()
    (cp / "lib" / "panicbutton" / "old_module.py").write_text("stale = 1\n")
    (cp / "lib" / "adafruit_ticks.mpy").write_bytes(b"C\x05old")  # would shadow the .py
    # What an earlier flash (RadioHead era) installed and this one no longer ships:
    (cp / "lib" / "adafruit_rfm9x.py").write_text("old = 1\n")
    (cp / "lib" / "user_lib.py").write_text("mine = 1\n")  # not ours: left alone
    (cp / manifest.MANIFEST_NAME).write_text(json.dumps(
        {"format": "panictool-manifest/1", "role": "button", "firmware": "0.2.0",
         "files": {"lib/adafruit_rfm9x.py": "0" * 64, "code.py": "0" * 64}}))
    (cp / "settings.toml").write_text('PB_REGION = "AS923-2"\n')
    r = run("flash", "--drive", str(cp), "--port", mpboard.port, "--json")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.output)
    assert doc["verified"] is True and doc["mismatches"] == []
    assert sorted(doc["remove"]) == ["lib/adafruit_rfm9x.py", "lib/adafruit_ticks.mpy",
                                     "lib/panicbutton/old_module.py"]
    assert (cp / "lib" / "user_lib.py").is_file()
    for e in manifest.build("button"):
        assert hashlib.sha256((cp / e.dest).read_bytes()).hexdigest() == e.sha256
    assert (cp / "settings.toml").read_text() == 'PB_REGION = "AS923-2"\n'  # untouched
    saved = json.loads((cp / manifest.MANIFEST_NAME).read_text())
    assert saved["role"] == "button" and "code.py" in saved["files"]
    # Second run copies nothing, and says so (it once said "copied 0 of 33 files (3368
    # bytes)", counting a rewritten panictool.json).
    before = (cp / manifest.MANIFEST_NAME).stat().st_mtime_ns
    r = run("flash", "--drive", str(cp), "--no-verify", "--json")
    again = json.loads(r.output)
    assert again["copy"] == [] and again["bytes"] == 0 and again["manifest_written"] is False
    assert again["unchanged"] == again["files"]
    assert (cp / manifest.MANIFEST_NAME).stat().st_mtime_ns == before
    r = run("flash", "--drive", str(cp), "--no-verify")
    assert f"all {again['files']} files already up to date, nothing copied" in r.output
    # One file changed on the drive: one copied, the rest counted as up to date.
    (cp / "code.py").write_text("# edited by hand\n")
    r = run("flash", "--drive", str(cp), "--no-verify")
    size = (cp / "code.py").stat().st_size
    assert f"copied 1 of {again['files']} files ({size} bytes), " \
        f"{again['files'] - 1} already up to date" in r.output


def test_verify_catches_a_file_the_board_reads_differently(mpboard, monkeypatch):
    cp = make_circuitpy(mpboard.fs)
    real = manifest.build

    def lying_build(role):
        entries = real(role)
        entries[0].sha256 = "0" * 64  # the board will not have this
        return entries

    monkeypatch.setattr(manifest, "build", lying_build)
    r = run("flash", "--drive", str(cp), "--port", mpboard.port)
    assert r.exit_code == 1, r.output
    assert "VERIFY FAILED" in r.output and "lib/adafruit_rfm/__init__.py: different" in r.output


def test_bridge_role_copies_bridge_firmware(tmp_path):
    """The bridge's tree is self-contained: its board profile is panicbridge/boards.py, so
    the button package a board may still hold from an earlier button flash is removed and
    nothing the bridge imports goes with it (tests/gates/test_boot_tree.py boots the tree)."""
    cp = make_circuitpy(tmp_path / "CIRCUITPY")
    (cp / "lib" / "panicbutton").mkdir()
    (cp / "lib" / "panicbutton" / "boards.py").write_text("PROFILES = {}\n")
    r = run("flash", "--role", "bridge", "--drive", str(cp), "--no-verify", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["remove"] == ["lib/panicbutton/boards.py"]
    assert (cp / "hal_bridge.py").is_file() and (cp / "lib" / "panicbridge" / "boards.py").is_file()
    for lib in ("adafruit_rfm/rfm9x.py", "adafruit_bus_device/spi_device.py", "asyncio/core.py",
                "adafruit_ticks.py"):
        assert (cp / "lib" / lib).is_file(), lib
    assert "from panicbridge.boards import" in (cp / "hal_bridge.py").read_text()
    assert not list((cp / "lib" / "panicbutton").glob("*.py"))


def test_wrong_board_is_refused(tmp_path):
    cp = make_circuitpy(tmp_path / "CIRCUITPY", board="raspberry_pi_pico")
    r = run("flash", "--drive", str(cp), "--json")
    assert r.exit_code == 3
    doc = json.loads(r.output)
    assert "raspberry_pi_pico" in doc["error"] and "adafruit_feather_rp2040_rfm" in doc["error"]
    assert list((cp / "lib").iterdir()) == []
    # An ESP32-S3 Feather is a button board but cannot be a bridge.
    s3 = make_circuitpy(tmp_path / "S3", board="adafruit_feather_esp32s3_nopsram")
    assert run("flash", "--role", "bridge", "--drive", str(s3)).exit_code == 3
    assert run("flash", "--drive", str(s3), "--dry-run").exit_code == 0


def test_wrong_circuitpython_major_is_refused(tmp_path):
    cp = make_circuitpy(tmp_path / "CIRCUITPY", version="8.2.10")
    r = run("flash", "--drive", str(cp))
    assert r.exit_code == 3
    assert "CircuitPython 8.2.10" in r.output and "--uf2" in r.output


def test_missing_drive(tmp_path, mounts):
    r = run("flash", "--json")
    assert r.exit_code == 3
    assert json.loads(r.output)["error"] == "no CIRCUITPY drive found"
    # A board in its bootloader: the hint says to install CircuitPython.
    mount_table(mounts, [make_uf2_drive(tmp_path / "RPI-RP2")])
    r = run("flash")
    assert r.exit_code == 3 and "--uf2" in r.output
    # A directory that is not a board.
    r = run("flash", "--drive", str(tmp_path))
    assert r.exit_code == 3 and "no boot_out.txt" in r.output


def test_two_drives_need_a_choice(tmp_path, mounts):
    mount_table(mounts, [make_circuitpy(tmp_path / "A"), make_circuitpy(tmp_path / "B")])
    r = run("flash", "--dry-run")
    assert r.exit_code == 3 and "--drive" in r.output


def test_uf2_install_then_firmware(tmp_path, mounts):
    boot = make_uf2_drive(tmp_path / "RPI-RP2")
    mount_table(mounts, [boot])
    uf2 = tmp_path / "circuitpython.uf2"
    uf2.write_bytes(uf2_image())
    cp_path = tmp_path / "CIRCUITPY"

    def board_reboots() -> None:
        # The bootloader takes the image, resets, and CircuitPython shows its drive.
        deadline = time.monotonic() + 10
        while not (boot / uf2.name).exists() and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(0.1)
        make_circuitpy(cp_path)
        mount_table(mounts, [cp_path])

    t = threading.Thread(target=board_reboots)
    t.start()
    try:
        r = run("flash", "--uf2", str(uf2), "--no-verify", "--wait", "20")
    finally:
        t.join()
    assert r.exit_code == 0, r.output
    # the wait is announced with its limit (a bar on a terminal), not a silent minute
    assert "waiting for CIRCUITPY (up to 20 s)" in r.output
    assert f"CircuitPython copied to {boot}" in r.output
    assert "not verified (--no-verify)" in r.output  # one run: CircuitPython, then firmware
    assert (boot / uf2.name).read_bytes() == uf2.read_bytes()
    assert (cp_path / "code.py").is_file()


def test_uf2_errors(tmp_path, mounts):
    bad = tmp_path / "bad.uf2"
    bad.write_bytes(b"not a uf2" * 100)
    boot = make_uf2_drive(tmp_path / "RPI-RP2")
    r = run("flash", "--uf2", str(bad), "--uf2-drive", str(boot))
    assert r.exit_code == 3 and "not a UF2 file" in r.output
    s3 = tmp_path / "s3.uf2"
    s3.write_bytes(uf2_image(family=0xC47E5767))
    r = run("flash", "--uf2", str(s3), "--uf2-drive", str(boot))
    assert r.exit_code == 3 and "ESP32-S3" in r.output and "RP2040" in r.output
    good = tmp_path / "good.uf2"
    good.write_bytes(uf2_image())
    r = run("flash", "--uf2", str(good))  # no boot drive in the mount table
    assert r.exit_code == 3 and "double-press" in r.output
    r = run("flash", "--uf2", str(good), "--uf2-drive", str(boot), "--wait", "0.3",
            "--no-verify")
    assert r.exit_code == 3 and "did not appear" in r.output


def test_serial_problem_during_verify_says_what_was_copied(tmp_path):
    cp = make_circuitpy(tmp_path / "CIRCUITPY")
    r = run("flash", "--drive", str(cp), "--port", str(tmp_path / "ttyACM9"), "--json")
    assert r.exit_code == 4, r.output
    doc = json.loads(r.output)
    assert "no serial port" in doc["error"] and doc["verified"] is False
    files = [e.dest for e in manifest.build("button")]
    assert doc["copied"] == files  # all of them, in copy order: code.py last
    assert f"the {len(files)} files copied before it are on CIRCUITPY: {files[0]}" \
        in doc["error"] and "run `panictool flash` again" in doc["hint"]
    r = run("flash", "--drive", str(cp), "--port", str(tmp_path / "ttyACM9"))
    assert r.exit_code == 4 and "no file was copied" in r.output
