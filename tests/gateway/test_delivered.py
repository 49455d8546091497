"""ACK DELIVERED (contract C1, issue 11 point 5), gateway side, over both paths.

A verified copy of a stored event (the button asking again after STORED, or the other
path's copy) is re-ACKed DELIVERED once dispatch has confirmed that event (its outbox row
delivered: dispatch answered 2xx), else STORED. The first ACK of a new frame is always
STORED. Over Wi-Fi (the HTTP 200 body) and LoRa (TX through the bridge on a pty), against a
real dispatch receiver that is slow, then down, then back.
"""

from __future__ import annotations

import http.client

import pytest
from gwharness import DispatchThread, GatewayThread, make_config
from gwkit import KEY, make_record, uplink, wait_until
from gwptybridge import PtyBridge

from panicgw.store import Store
from panicproto import frames


@pytest.fixture
def rig(tmp_path):
    disp = DispatchThread()
    bridge = PtyBridge(tmp_path / "tty")
    bridge.plug()
    cfg = make_config(tmp_path, http={"rate_per_s": 1000.0, "rate_burst": 1000},
                      serial={"enabled": True, "port": str(tmp_path / "tty"),
                              "ping_interval_s": 0.5},
                      dispatch={"url": disp.srv.url, "timeout_s": 0.5,
                                "allow_insecure_http": True})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    try:
        with GatewayThread(cfg) as g:
            assert wait_until(lambda: g.status()["bridge"]["state"] == "connected")
            yield g, bridge, disp
    finally:
        bridge.unplug()
        disp.close()


def _wifi(g: GatewayThread, counter: int, attempt: int = 0) -> frames.Downlink:
    c = http.client.HTTPConnection("127.0.0.1", g.gw.http.port, timeout=10)
    try:
        c.request("POST", "/v1/frames", body=uplink(counter=counter, attempt=attempt, wifi=True),
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        body = r.read()
        assert r.status == 200, (r.status, body)
    finally:
        c.close()
    d = frames.decode_downlink(body, KEY)
    assert d.kind == frames.ACK and d.counter == counter
    return d


def _lora(bridge: PtyBridge, counter: int, attempt: int = 0) -> frames.Downlink:
    n = len(bridge.tx)
    bridge.rx(uplink(counter=counter, attempt=attempt))
    assert wait_until(lambda: len(bridge.tx) > n), "no TX from the gateway"
    d = frames.decode_downlink(bridge.tx[n], KEY)
    assert d.kind == frames.ACK and d.counter == counter
    return d


def _delivered(g: GatewayThread, counter: int) -> bool:
    """The event's own outbox row is delivered (a repeat press joins the first press's
    incident but has a row, and a dispatch message, of its own)."""
    ev = g.db(Store.find_event, 0xBEEF, counter)
    rows = g.db(Store.outbox_rows, "delivered")
    return ev is not None and any(r["event_id"] == ev[0] for r in rows)


def _wait_delivered(g: GatewayThread, disp: DispatchThread, counter: int) -> None:
    assert wait_until(lambda: _delivered(g, counter), 60), "dispatch never confirmed"
    assert disp.bodies(), "dispatch has no accepted request"


def test_reack_stays_stored_while_dispatch_is_slow_or_down(rig):
    g, bridge, disp = rig
    # Wi-Fi, dispatch slow (answers after the gateway's 0.5 s timeout): never DELIVERED
    disp.srv.fail(None, delay_s=3.0)
    assert _wifi(g, 0x00110001).status == frames.STORED
    assert wait_until(lambda: disp.srv.active > 0 or disp.srv.received)
    for attempt in (1, 2):
        assert _wifi(g, 0x00110001, attempt).status == frames.STORED
    assert _lora(bridge, 0x00110001, 3).status == frames.STORED  # the other path's copy
    # LoRa, dispatch down (refusing connections)
    disp.call(disp.srv.stop())
    assert _lora(bridge, 0x00120001).status == frames.STORED
    assert _lora(bridge, 0x00120001, 1).status == frames.STORED
    assert _wifi(g, 0x00120001, 2).status == frames.STORED
    assert not _delivered(g, 0x00110001) and not _delivered(g, 0x00120001)
    # dispatch back: once each event is confirmed, its re-ACKs say DELIVERED on both paths
    disp.srv.heal()
    disp.call(disp.srv.start())
    _wait_delivered(g, disp, 0x00110001)
    _wait_delivered(g, disp, 0x00120001)
    assert _wifi(g, 0x00110001, 4).status == frames.DELIVERED
    assert _lora(bridge, 0x00110001, 5).status == frames.DELIVERED
    assert _lora(bridge, 0x00120001, 3).status == frames.DELIVERED
    assert _wifi(g, 0x00120001, 4).status == frames.DELIVERED
    assert g.status()["frames"]["acked_delivered"] == 4


def test_first_ack_is_always_stored_then_delivered(rig):
    g, bridge, disp = rig
    assert _lora(bridge, 0x00130001).status == frames.STORED  # healthy dispatch, still STORED
    _wait_delivered(g, disp, 0x00130001)
    assert _lora(bridge, 0x00130001, 1).status == frames.DELIVERED
    assert _wifi(g, 0x00140001).status == frames.STORED
    _wait_delivered(g, disp, 0x00140001)
    assert _wifi(g, 0x00140001, 1).status == frames.DELIVERED
    # a heartbeat has nothing to deliver: its re-ACK stays STORED
    hb = uplink(kind=frames.HEARTBEAT, counter=0x00150001)
    for _ in range(2):
        n = len(bridge.tx)
        bridge.rx(hb)
        assert wait_until(lambda n=n: len(bridge.tx) > n)
        assert frames.decode_downlink(bridge.tx[n], KEY).status == frames.STORED
