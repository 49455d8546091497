"""Boot gate: each role's flashed tree boots under the MicroPython VM with nothing else.

For each role, the exact file tree `panictool flash` writes to CIRCUITPY
(`panicimage.manifest.write_tree`, the CircuitPython libraries included) goes into a
directory; `boot.py` runs, then `code.py` runs with only that tree, its `lib/` and the
CircuitPython stand-ins of tests/gates/standins on MICROPYPATH (no CPython library, no
repository path), until the boot report appears; the button runs on until the real
`adafruit_rfm` library has put its first ALARM into the SX127x model's FIFO. Any
ImportError or traceback fails. In CI (CI=true) a missing VM is a failure, never a skip.
"""

from __future__ import annotations

import json
import os
import queue
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from panicbutton.nvmstore import identity_record
from panicimage import manifest
from panicproto import frames

ROOT = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
SX127X = ROOT / "tools" / "panicsim" / "sx127x.py"
KEY = bytes(range(16, 32))
DEV = 0x0B007ED1
# Heap for code.py. Measured peaks on this 64-bit VM (8-byte pointers, 32-byte GC blocks:
# a board needs less): button 185 KB (LoRa) / 189 KB (LoRa + Wi-Fi), bridge 80 KB; the
# RadioHead-era stack (adafruit_rfm9x compiled as one 37 KB source) needed 253 KB. The
# resident budget is tests/firmware/test_mp_import.py; this keeps growth from hiding.
HEAP = "256k"

CASES = {
    # LoRa button on the Feather RP2040 RFM95; button held at power-on -> ALARM at 0.5 s.
    "button-feather_rp2040_rfm95": {
        "role": "button", "board_id": "adafruit_feather_rp2040_rfm",
        "radio_pins": ("RFM_CS", "RFM_RST"), "pins_low": ("D6", "D5"), "wifi": {},
        "settings": {"PB_REGION": "AS923-2", "PB_SF": "9", "PB_ALARM_HOLD_MS": "500"},
        "paths": ["lora"],
    },
    # ESP32-S3 with the RFM95 wing: LoRa and Wi-Fi (adafruit_requests is imported at boot).
    "button-feather_esp32s3_rfm95_wing": {
        "role": "button", "board_id": "adafruit_feather_esp32s3_nopsram",
        "radio_pins": ("D10", "D11"), "pins_low": ("D6", "D5"),
        "wifi": {"shop": "password1"},
        "settings": {"PB_REGION": "AS923-2", "PB_SF": "9", "PB_ALARM_HOLD_MS": "500",
                     "PB_BOARD": "feather_esp32s3_rfm95_wing", "PB_WIFI_SSID": "shop",
                     "PB_WIFI_PASSWORD": "password1",
                     "PB_GATEWAY_URL": "http://127.0.0.1:9"},
        "paths": ["lora", "wifi"],
    },
    "bridge-feather_rp2040_rfm95": {
        "role": "bridge", "board_id": "adafruit_feather_rp2040_rfm",
        "radio_pins": ("RFM_CS", "RFM_RST"), "pins_low": (), "wifi": {},
        "settings": {"PB_FREQUENCY_MHZ": "921.4", "PB_SF": "9"},
    },
}


def micropython() -> str:
    p = Path(sys.executable).parent / "micropython"
    found = str(p) if p.exists() else shutil.which("micropython")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("micropython is not installed: the boot gate is required in CI")
        pytest.skip("micropython is not installed")
    return found


def flashed(tmp: Path, case: dict) -> tuple[Path, dict]:
    """(CIRCUITPY tree as flash writes it, environment for the VM)."""
    tree = tmp / "CIRCUITPY"
    manifest.write_tree(case["role"], tree)
    standins = tmp / "standins"
    standins.mkdir()
    for f in STANDINS.glob("*.py"):
        shutil.copy(f, standins / f.name)
    shutil.copy(SX127X, standins / "sx127x.py")
    nvm = bytearray(b"\xff" * 4096)
    nvm[0:26] = identity_record(DEV, KEY)
    (standins / "gate_config.py").write_text(
        f"BOARD_ID = {case['board_id']!r}\nRADIO_PINS = {case['radio_pins']!r}\n"
        f"PINS_LOW = {case['pins_low']!r}\nWIFI_NETWORKS = {case['wifi']!r}\n"
        f"NVM = bytes.fromhex({nvm.hex()!r})\n")
    env = {"MICROPYPATH": f"{tree}:{tree}/lib:{standins}", "PATH": os.environ["PATH"]}
    env.update(case["settings"])  # CircuitPython's os.getenv reads settings.toml
    return tree, env


def vm(main: str) -> list[str]:
    """The VM command that runs /``main`` of the tree (the current directory)."""
    return [micropython(), "-X", f"heapsize={HEAP}", "-c", "import launch"]


def boot_py(tree: Path, env: dict) -> str:
    proc = subprocess.run(vm("boot.py"), cwd=tree, env=dict(env, GATE_MAIN="boot.py"),
                          capture_output=True, text=True, timeout=60)
    out = proc.stdout + proc.stderr
    assert proc.returncode == 0 and "Traceback" not in out, out
    return out


def run_code_py(tree: Path, env: dict, done, timeout: float = 30.0) -> list[str]:
    """Run code.py until ``done(lines)`` is true (then stop it), or it exits, or timeout."""
    proc = subprocess.Popen(vm("code.py"), cwd=tree, env=dict(env, GATE_MAIN="code.py"),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    q: queue.Queue = queue.Queue()

    def pump() -> None:
        for ln in proc.stdout:
            q.put(ln.rstrip("\n"))
        q.put(None)

    t = threading.Thread(target=pump, daemon=True)
    t.start()
    end = time.monotonic() + timeout
    try:
        while time.monotonic() < end and not done(lines):
            try:
                ln = q.get(timeout=0.2)
            except queue.Empty:
                continue
            if ln is None:
                break
            lines.append(ln)
    finally:
        proc.kill()
        proc.wait(10)
        t.join(5)
    return lines


def report(lines: list[str], prefix: str) -> dict | None:
    for ln in lines:
        if ln.startswith(prefix + " {"):
            return json.loads(ln[len(prefix) + 1:])
    return None


def tx_frames(lines: list[str]) -> list[bytes]:
    return [bytes.fromhex(ln.split()[-1]) for ln in lines if ln.startswith("SX127X-TX ")]


def assert_clean(lines: list[str]) -> None:
    text = "\n".join(lines)
    for bad in ("Traceback", "ImportError", "loop error", "Error:", "ERROR"):
        assert bad not in text, text


@pytest.mark.parametrize("name", sorted(CASES))
def test_flashed_tree_boots_under_micropython(tmp_path: Path, name: str) -> None:
    case = CASES[name]
    tree, env = flashed(tmp_path, case)
    assert sorted(p.name for p in tree.iterdir()) == sorted(
        {e.dest.split("/")[0] for e in manifest.build(case["role"])} | {manifest.MANIFEST_NAME})
    out = boot_py(tree, env)
    data = case["role"] == "bridge"
    assert f"USB_CDC enable console=True data={data}" in out, out
    if case["role"] == "bridge":
        lines = run_code_py(tree, env, lambda ls: report(ls, "PANIC-BRIDGE") is not None)
        rep = report(lines, "PANIC-BRIDGE")
        assert rep is not None, "\n".join(lines)
        assert rep["radio_error"] is None and rep["radio"]["sf"] == 9, rep
        assert rep["radio"]["frequency_mhz"] == 921.4
        assert_clean(lines)
        return
    lines = run_code_py(tree, env, lambda ls: bool(tx_frames(ls)))
    rep = report(lines, "PANIC-BUTTON")
    assert rep is not None, "\n".join(lines)
    assert rep["device_id"] == DEV and rep["radio"] == "ok" and rep["paths"] == case["paths"]
    assert "error" not in rep and rep["cold_boot"] is True, rep
    if "wifi" in case["paths"]:
        assert rep["wifi"] == "ok", rep
    sent = tx_frames(lines)
    assert sent, "\n".join(lines)
    # What adafruit_rfm put on air (radiohead = False): the 19-byte frame and nothing more.
    assert len(sent[0]) == frames.UPLINK_LEN
    up = frames.decode_uplink(sent[0], KEY)
    assert up.kind == frames.ALARM and up.device_id == DEV
    assert_clean(lines)


OLD_BRIDGE_IMPORT = "from panicbutton import boards\n"


def test_gate_catches_a_module_the_manifest_left_out(tmp_path: Path) -> None:
    """Today's bug, as it was: the bridge glue imported panicbutton.boards, which the
    bridge manifest did not ship. Under the gate that boot must fail with ImportError."""
    case = CASES["bridge-feather_rp2040_rfm95"]
    tree, env = flashed(tmp_path, case)
    glue = tree / "hal_bridge.py"
    text = glue.read_text()
    assert "from panicbridge.boards import PROFILE" in text
    glue.write_text(text.replace("from panicbridge.boards import PROFILE\n",
                                 OLD_BRIDGE_IMPORT
                                 + 'PROFILE = boards.PROFILES["feather_rp2040_rfm95"]\n'))
    assert not (tree / "lib" / "panicbutton").exists()
    lines = run_code_py(tree, env, lambda ls: any("Error" in ln for ln in ls), timeout=20)
    text = "\n".join(lines)
    assert "ImportError" in text and "panicbutton" in text, text
    assert report(lines, "PANIC-BRIDGE") is None
