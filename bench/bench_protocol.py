"""Protocol cost: uplink frames encoded+verified per second on CPython, one tag and one
link CRC on CPython (panicproto.mac / panicproto.crc, backed by the stdlib's C code there)
against the portable code boards run, and the per-frame verify time under the MicroPython
VM, each against a baseline measured in the same run.

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

from panicproto import crc, frames, mac

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


def _us_per_call(fn, n: int) -> float:
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        for _ in range(n):
            fn()
        best = min(best, (time.perf_counter() - t0) / n * 1e6)
    return best


def fast_paths(n: int = 50000) -> list[dict]:
    """Before/after of issue 12.8 in one run: the API on CPython (stdlib hmac.digest,
    binascii.crc_hqx) against the portable functions behind it (what boards run)."""
    body = b"PB1\x00" + bytes(11)
    frame = bytes(range(24))  # a link frame's type | seq | RX payload
    out = []
    for metric, fast, portable, unit in (
            ("uplink tag (HMAC-SHA256), CPython: panicproto.mac.hmac_sha256",
             lambda: mac.hmac_sha256(KEY, body), lambda: mac._hmac(KEY, body), "us/tag"),
            ("link frame CRC-16, CPython: panicproto.crc.crc16",
             lambda: crc.crc16(frame), lambda: crc._crc16(frame), "us/frame")):
        value, base = _us_per_call(fast, n), _us_per_call(portable, n)
        out.append({"bench": "protocol", "metric": metric, "value": round(value, 2),
                    "unit": unit, "better": "lower",
                    "baseline": "the portable code boards run (before issue 12.8 CPython "
                                "ran it too)",
                    "baseline_value": round(base, 2), "ratio": round(value / base, 3),
                    "target": "the stdlib's C code: well under the portable code"})
    return out


MP_SCRIPT = """
import time, hashlib
from panicproto import crc, frames, mac
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
    for result in (cpython(), *fast_paths(), micropython()):
        if result:
            print(json.dumps(result), flush=True)
