"""The foundation's commands, run as a user would (installed console scripts)."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

from panicproto import frames

BIN = Path(sys.executable).parent
KEY = bytes(range(16))


def run(*args: str) -> subprocess.CompletedProcess:
    exe = str(BIN / args[0]) if (BIN / args[0]).exists() else shutil.which(args[0])
    return subprocess.run([exe, *args[1:]], capture_output=True, text=True, timeout=60)


def test_versions() -> None:
    for tool in ("panicgw", "panictool"):
        p = run(tool, "--version")
        assert p.returncode == 0 and p.stdout.startswith(f"{tool} 0."), p.stdout


def test_decode_verifies_and_rejects() -> None:
    raw = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, 0x1234, 0x10001, battery_mv=3300))
    p = run("panicgw", "decode", raw.hex(), "--key", KEY.hex(), "--json")
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    assert out["ok"] and out["verified"] and out["type"] == "alarm" and out["counter"] == 0x10001
    p = run("panicgw", "decode", raw.hex(), "--key", bytes(16).hex(), "--json")
    assert p.returncode == 1 and json.loads(p.stdout)["reason"] == "bad_tag"
    p = run("panicgw", "decode", "zz")
    assert p.returncode == 2 and "hexadecimal" in p.stderr
    assert KEY.hex() not in p.stdout + p.stderr


def test_airtime_table() -> None:
    p = run("panictool", "airtime", "--json")
    assert p.returncode == 0
    rows = {r["sf"]: r for r in json.loads(p.stdout)["rows"]}
    assert rows[10]["allowed"] and not rows[11]["allowed"]
    assert rows[9]["airtime_ms"] == 185.3
    assert run("panictool", "airtime", "--region", "mars").returncode == 2
