"""The whole button firmware (glue included) imports under MicroPython with a 96 KB heap.

The hardware modules are replaced by tiny shims written here (a test-only stand-in for
CircuitPython's built-ins); everything else is the real firmware/lib and glue code.
"""

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIMS = {
    "board.py": "board_id = 'adafruit_feather_rp2040_rfm'\n",
    "digitalio.py": "class DigitalInOut:\n    pass\n",
    "keypad.py": "class Keys:\n    pass\nclass Event:\n    pass\n",
    # The real nvm is flash, not heap: a small bytearray stands in for it.
    "microcontroller.py": "nvm = bytearray(256)\n",
    "alarm.py": "sleep_memory = bytearray(64)\nwake_alarm = None\n",
    "usb_cdc.py": "data = None\n",
    "watchdog.py": "class WatchDogMode:\n    RESET = 1\n",
}
CHECK = """
import gc
import hal_board
import panicbutton.app
from panicbutton import (boards, classifier, counter, downlink, feedback, nvmstore,
                         policy, power, report, settings, transport_lora, transport_wifi)
from panicproto import crc
gc.collect()
print("IMPORTED", gc.mem_free())
"""


def _micropython() -> str:
    p = Path(sys.executable).parent / "micropython"
    found = str(p) if p.exists() else shutil.which("micropython")
    if not found:
        if os.environ.get("CI") == "true":
            pytest.fail("micropython is not installed: the gate is required in CI")
        pytest.skip("micropython is not installed")
    return found


@pytest.mark.parametrize(("firmware", "check"), [
    ("button", CHECK),
    ("bridge", "import hal_bridge\nimport panicbridge.bridge\nprint('IMPORTED')\n"),
])
def test_firmware_imports_under_96k(tmp_path: Path, firmware: str, check: str) -> None:
    for name, text in SHIMS.items():
        (tmp_path / name).write_text(text)
    env = {"MICROPYPATH": f"{ROOT}/firmware/lib:{ROOT}/firmware/{firmware}:{tmp_path}",
           "PATH": os.environ["PATH"]}
    proc = subprocess.run([_micropython(), "-X", "heapsize=96k", "-c", check],
                          capture_output=True, text=True, timeout=120, env=env)
    assert "IMPORTED" in proc.stdout, proc.stdout + proc.stderr
