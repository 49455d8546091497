"""GET /v1/frames on the real daemon: every judged frame with its verdict and the device it
claims (also for bad_tag, replay and unknown_device rejections), filters, paging, bad
queries; and the ring's constant memory."""

from __future__ import annotations

import http.client
import json

import pytest
from gwharness import GatewayThread, make_config
from gwkit import DEV, KEY, make_record, post_frame, uplink

from panicgw import pipeline as pl
from panicgw.pipeline.recent import RecentFrames
from panicgw.store import Store
from panicproto import frames

OTHER = 0x0000CAFE




def _get(port: int, query: str) -> tuple[int, dict]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    c.request("GET", "/v1/frames" + query)
    r = c.getresponse()
    doc = json.loads(r.read())
    c.close()
    return r.status, doc


@pytest.fixture
def gw(tmp_path):
    cfg = make_config(tmp_path, http={"rate_per_s": 10000.0, "rate_burst": 10000})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.upsert_device(make_record(OTHER, bytes(range(16, 32))))
    s.close()
    with GatewayThread(cfg) as g:
        yield g


def test_frames_endpoint_attributes_good_bad_tag_and_replay(gw):
    http_port, status_port = gw.gw.http.port, gw.gw.status_port
    good = uplink(frames.ALARM, 0x00030001, wifi=True)
    assert post_frame(http_port, good) == 200
    forged = uplink(frames.ALARM, 0x00030002, key=bytes(16), wifi=True)
    assert post_frame(http_port, forged) == 403
    stale = uplink(frames.TEST, 0x00010005, wifi=True)  # an older epoch: behind the window
    assert post_frame(http_port, stale) == 200  # answered with a signed RESYNC, never stored
    assert post_frame(http_port, good) == 200  # the retry: re-acknowledged as a duplicate
    assert post_frame(http_port, uplink(frames.HEARTBEAT, 7, device_id=0x0BADF00D)) == 403
    assert post_frame(http_port, uplink(frames.TEST, 0x00020001, device_id=OTHER,
                                   key=bytes(range(16, 32)))) == 200
    assert post_frame(http_port, b"\x11\x00") == 400  # too short to name a device

    code, doc = _get(status_port, "")
    assert code == 200
    rows = doc["frames"]
    assert [r["seq"] for r in rows] == list(range(1, 8)) and doc["next"] == 7
    got = [(r["device_id"], r["counter"], r["kind"], r["verdict"], r["reason"]) for r in rows]
    assert got == [
        (DEV, 0x00030001, "alarm", "stored", None),
        (DEV, 0x00030002, "alarm", "rejected", "bad_tag"),
        (DEV, 0x00010005, "test", "rejected", "replay"),
        (DEV, 0x00030001, "alarm", "duplicate", None),
        (0x0BADF00D, 7, "heartbeat", "rejected", "unknown_device"),
        (OTHER, 0x00020001, "test", "stored", None),
        (None, None, None, "rejected", "short"),
    ]
    first = rows[0]
    assert first["path"] == "wifi" and first["incident_id"] == f"{DEV:08X}-00030001-panic"
    assert rows[3]["incident_id"] == first["incident_id"]
    assert isinstance(first["at"], float) and set(first) >= {
        "seq", "at", "path", "rssi", "snr", "device_id", "counter", "kind", "verdict",
        "reason", "incident_id"}

    # One device, paging with next, and the cursor past the end.
    code, doc = _get(status_port, f"?device={DEV:08X}&limit=2")
    assert [r["seq"] for r in doc["frames"]] == [1, 2] and doc["next"] == 2
    code, doc = _get(status_port, f"?device=0x{DEV:08x}&since=2")
    assert [r["seq"] for r in doc["frames"]] == [3, 4] and doc["next"] == 7
    code, doc = _get(status_port, "?since=7")
    assert doc == {"frames": [], "next": 7, "oldest": 1}
    code, doc = _get(status_port, "?since=99")  # a cursor from before a restart
    assert doc["frames"] == [] and doc["next"] == 7

    for bad in ("?since=x", "?limit=-1", "?limit=99999", "?device=nothex", "?device=123456789",
                "?device=-1", "?device=c0_ffee"):
        code, doc = _get(status_port, bad)
        assert code == 400 and "error" in doc, bad


def test_ring_keeps_constant_size_and_pages_across_eviction():
    ring = RecentFrames(size=50)
    key = KEY
    for c in range(1, 131):
        data = uplink(frames.HEARTBEAT, c, key=key)
        ring.add(pl.Frame(data, "lora", -100.0, 5.0, at=float(c)),
                 pl.Outcome(pl.STORED, device_id=DEV, counter=c, kind="heartbeat"))
    assert len(ring) == 50 and ring.seq == 130 and ring.oldest == 81
    doc = ring.query(since=10, limit=20)  # the reader fell behind: it gets the oldest held
    assert [f["seq"] for f in doc["frames"]] == list(range(81, 101)) and doc["next"] == 100
    doc = ring.query(since=doc["next"], limit=2000)
    assert [f["counter"] for f in doc["frames"]] == list(range(101, 131))
    assert doc["next"] == 130 and doc["oldest"] == 81
    with pytest.raises(ValueError):
        RecentFrames(size=0)
