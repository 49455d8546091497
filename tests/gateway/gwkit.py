"""Helpers for the gateway tests: a registered device, signed frames, free ports."""

from __future__ import annotations

import http.client
import socket
import time
from collections.abc import Callable
from pathlib import Path

from panicgw.registry import DeviceRecord, SiteRecord
from panicproto import frames

REPO = Path(__file__).resolve().parents[2]
KEY = bytes.fromhex("000102030405060708090a0b0c0d0e0f")
DEV = 0x0000BEEF


def make_record(device_id: int = DEV, key: bytes = KEY, **kw) -> DeviceRecord:
    site = SiteRecord("Toko Sinar", "shop", "Jl. Asia Afrika 8, Bandung", -6.9217, 107.6071,
                      "Ibu Sari", "+62 812 0000 0000")
    return DeviceRecord(device_id=device_id, key=key, site=site, label="kasir",
                        paths=["lora", "wifi"], supervision_s=600, firmware="0.1.0", **kw)


def uplink(kind: int = frames.ALARM, counter: int = 1, device_id: int = DEV, key: bytes = KEY,
           attempt: int = 0, battery_mv: int = 3700, wifi: bool = False) -> bytes:
    return frames.encode_uplink(key, frames.Uplink(kind, device_id, counter, attempt=attempt,
                                                   battery_mv=battery_mv, wifi=wifi))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def post_frame(port: int, body: bytes) -> int:
    """POST one raw frame to a gateway's HTTP ingest; the status code."""
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", "/v1/frames", body=body,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def wait_until(pred: Callable[[], object], timeout: float = 15.0) -> bool:
    """Poll ``pred`` every 20 ms; True as soon as it is truthy, False after ``timeout`` s."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.02)
    return False
