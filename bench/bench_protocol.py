"""Protocol cost: uplink frames encoded+verified per second on CPython, and the per-frame
verify time under the MicroPython VM, each against a baseline measured in the same run.

Prints one JSON object per metric (the format bench/run.py collects).
"""

import hashlib
import hmac
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from panicproto import frames

ROOT = Path(__file__).resolve().parents[1]
KEY = bytes(range(16))


def _rate(fn, n: int) -> float:
    best = 0.0
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            fn(i)
        best = max(best, n / (time.perf_counter() - t0))
    return best


def cpython(n: int = 20000) -> dict:
    def ours(i: int) -> None:
        raw = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, 0x1234, i, battery_mv=3300))
        frames.decode_uplink(raw, KEY)

    body = bytes(11)

    def stdlib(i: int) -> None:  # the same two tags with the C-backed stdlib hmac
        a = hmac.new(KEY, b"PB1\x00" + body, hashlib.sha256).digest()[:8]
        b = hmac.new(KEY, b"PB1\x00" + body, hashlib.sha256).digest()[:8]
        hmac.compare_digest(a, b)

    value, base = _rate(ours, n), _rate(stdlib, n)
    return {"bench": "protocol", "metric": "uplink encode + verify, CPython",
            "value": round(value), "unit": "frames/s", "better": "higher",
            "baseline": "stdlib hmac computing the same two tags",
            "baseline_value": round(base), "ratio": round(value / base, 3),
            "target": ">= 2,000 frames/s (the gateway's whole pipeline target)"}


MP_SCRIPT = """
import time, hashlib
from panicproto import frames
KEY = bytes(range(16))
raw = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, 0x1234, 7, battery_mv=3300))
N = %d
t0 = time.ticks_us()
for i in range(N):
    frames.decode_uplink(raw, KEY)
t1 = time.ticks_us()
for i in range(N):
    hashlib.sha256(raw).digest()
t2 = time.ticks_us()
print(time.ticks_diff(t1, t0) / N, time.ticks_diff(t2, t1) / N)
"""


def micropython(n: int = 2000) -> dict | None:
    exe = Path(sys.executable).parent / "micropython"
    exe = str(exe) if exe.exists() else shutil.which("micropython")
    if not exe:
        return None
    env = {"MICROPYPATH": str(ROOT / "firmware/lib"), "PATH": os.environ["PATH"]}
    out = subprocess.run([exe, "-X", "heapsize=64k", "-c", MP_SCRIPT % n], env=env,
                         capture_output=True, text=True, timeout=300, check=True).stdout.split()
    verify_us, sha_us = float(out[0]), float(out[1])
    return {"bench": "protocol", "metric": "uplink verify per frame, MicroPython VM (unix)",
            "value": round(verify_us, 1), "unit": "us/frame", "better": "lower",
            "baseline": "one bare SHA-256 of the frame in the same VM",
            "baseline_value": round(sha_us, 1), "ratio": round(verify_us / sha_us, 2),
            "target": "well under the ~1 s LoRa receive window on a board"}


if __name__ == "__main__":
    for result in (cpython(), micropython()):
        if result:
            print(json.dumps(result), flush=True)
