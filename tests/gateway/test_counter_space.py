"""Stale frames and the top of the counter space (issue 11 points 8 and 9), against the daemon
with a real dispatch receiver; and one 403 answer for unknown devices and bad tags (point 7).

docs/protocol.md, "Anti-replay and dedupe" and "The top of the counter space", is what these
check: a stored duplicate below the window is re-ACKed; a never-stored stale frame gets a
RESYNC to the next epoch; at epoch 0xFFFF there is no next epoch, so no RESYNC, one
device_trouble event to dispatch naming the device, and diag FAILs naming the rekey.
"""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest
from gwharness import DispatchThread, GatewayThread, make_config
from gwkit import DEV, KEY, make_record, uplink, wait_until

from panicgw import diag
from panicgw.store import Store
from panicproto import frames

OTHER_KEY = bytes(range(100, 116))


@pytest.fixture
def rig(tmp_path):
    disp = DispatchThread()
    cfg = make_config(tmp_path, http={"rate_per_s": 1000.0, "rate_burst": 1000},
                      dispatch={"url": disp.srv.url, "timeout_s": 2.0,
                                "allow_insecure_http": True})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    try:
        with GatewayThread(cfg) as g:
            yield g, disp
    finally:
        disp.close()


def _post(g: GatewayThread, body: bytes) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", g.gw.http.port, timeout=10)
    try:
        c.request("POST", "/v1/frames", body=body,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _acked(g: GatewayThread, body: bytes) -> frames.Downlink:
    status, data = _post(g, body)
    assert status == 200, (status, data)
    return frames.decode_downlink(data, KEY)


def _trouble(disp: DispatchThread) -> list[dict]:
    return [b for b in disp.bodies() if b.get("event") == "device_trouble"]


def test_stale_stored_duplicate_reacked_never_stored_gets_resync(rig):
    g, _ = rig
    first = frames.make_counter(3, 1)
    assert _acked(g, uplink(counter=first)).kind == frames.ACK
    for seq in range(2, 80):  # move the window 64+ above the first frame
        assert _acked(g, uplink(kind=frames.HEARTBEAT, counter=frames.make_counter(3, seq)))
    # the stored one, retried (its ACK was lost): re-ACKed, not RESYNCed
    again = _acked(g, uplink(counter=first, attempt=5))
    assert again.kind == frames.ACK and again.counter == first
    # a stale one never stored (e.g. a reflashed button at an old epoch): RESYNC
    old = frames.make_counter(2, 9)
    rs = _acked(g, uplink(counter=old))
    assert rs.kind == frames.RESYNC and rs.counter == frames.make_counter(4, 0)
    assert g.status()["rejections"].get("replay") == 1


def test_last_epoch_no_resync_one_trouble_event_and_diag_fails(rig, tmp_path: Path):
    g, disp = rig
    top = frames.make_counter(0xFFFF, 5)
    assert _acked(g, uplink(kind=frames.HEARTBEAT, counter=top)).kind == frames.ACK
    # a verified frame below the window: before, a RESYNC to counter 0 that can never work
    for attempt in range(3):
        status, body = _post(g, uplink(counter=frames.make_counter(1, 1), attempt=attempt))
        assert status == 403 and body == b"forbidden\n"  # no RESYNC, no ACK
    assert wait_until(lambda: len(_trouble(disp)) >= 1)
    st = g.status()
    assert st["rejections"]["counter_exhausted"] == 3
    assert st["frames"]["counter_exhausted"] == 3 and st["frames"]["resync"] == 0
    trouble = _trouble(disp)
    assert len(trouble) == 1  # once, however often the button retries
    t = trouble[0]
    assert t["device"]["id"] == f"{DEV:08X}" and t["category"] == "trouble"
    assert t["contact_id"]["code"] == 380 and t["site"]["name"] == "Toko Sinar"
    assert f"0x{DEV:08X}" in t["detail"] and "panictool rekey" in t["detail"]
    assert "alarm" in t["detail"]  # what it refused
    # stored like other trouble (outbox row, incident)
    def rows() -> list[dict]:
        return [r for r in g.db(Store.outbox_rows)
                if r["payload"]["event"] == "device_trouble"]
    assert wait_until(lambda: [r["state"] for r in rows()] == ["delivered"])
    # diag names the device and the rekey
    ctx = diag.Context(config_path=None, cfg=g.cfg)
    try:
        r = diag.check_counter_space(ctx)
    finally:
        ctx.close()
    assert r.status == diag.FAIL and f"0x{DEV:08X}" in r.finding and "refused" in r.finding
    assert "panictool rekey --use-key" in r.hint and f"panicgw devices rekey {DEV:08X}" in r.hint
    # the rekey (which restarts the counter) is the way out: frames are accepted again
    s = Store(g.cfg.db_path)
    try:
        assert s.rekey(DEV, OTHER_KEY) == 2
    finally:
        s.close()
    fresh = frames.encode_uplink(OTHER_KEY, frames.Uplink(frames.ALARM, DEV,
                                                          frames.make_counter(1, 1)))
    assert wait_until(lambda: _post(g, fresh)[0] == 200)


def test_one_forbidden_answer_for_unknown_device_and_bad_tag(rig):
    g, _ = rig
    before = g.status()["rejections"]
    forged = bytearray(uplink(counter=0x00090001))
    forged[-1] ^= 1
    unknown = uplink(counter=0x00090002, device_id=0x00C0FFEE)
    answers = {_post(g, bytes(forged)), _post(g, unknown)}
    assert answers == {(403, b"forbidden\n")}  # the network cannot tell them apart
    after = g.status()["rejections"]
    assert after.get("bad_tag", 0) == before.get("bad_tag", 0) + 1  # counted apart inside
    assert after.get("unknown_device", 0) == before.get("unknown_device", 0) + 1
