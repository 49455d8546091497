"""Daemon wiring: alarms jump the ingest queue, a dead MQTT broker never delays dispatch, a
live one (private mosquitto) gets events and the retained status, malformed HTTP is refused."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time

import pytest
from gwharness import DispatchThread, GatewayThread, make_config
from gwkit import DEV, free_port, make_record, post_frame, uplink, wait_until

from panicgw import pipeline as pl
from panicgw.store import Store
from panicproto import frames


def test_alarms_processed_before_queued_heartbeats(tmp_path):
    store = Store(tmp_path / "gw.db", check_same_thread=False)
    store.upsert_device(make_record())

    async def scenario() -> list[int]:
        p = pl.Pipeline(store, "gw")
        proc = pl.Processor(p, batch_max=4)
        gate = threading.Event()
        blocker = proc.run_sync(gate.wait)  # the pipeline thread is busy
        futs = [proc.submit_nowait(pl.Frame(uplink(frames.HEARTBEAT, c), "lora"))
                for c in range(1, 9)]
        futs.append(proc.submit_nowait(pl.Frame(uplink(frames.ALARM, 9), "lora")))
        task = asyncio.create_task(proc.run())
        await asyncio.sleep(0.05)
        gate.set()
        await blocker
        await asyncio.gather(*futs)
        task.cancel()
        proc.close()
        return [e["counter"] for e in reversed(store.recent_events(20))]
    order = asyncio.run(scenario())
    assert order[0] == 9 and sorted(order[1:]) == list(range(1, 9))


def _gw(tmp_path, **kw):
    cfg = make_config(tmp_path, **kw)
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    return cfg


def test_dead_broker_does_not_delay_dispatch(tmp_path):
    disp = DispatchThread()
    try:
        cfg = _gw(tmp_path, mqtt={"enabled": True, "port": free_port()},
                  dispatch={"url": disp.srv.url, "allow_insecure_http": True})
        with GatewayThread(cfg) as g:
            t0 = time.monotonic()
            assert post_frame(g.gw.http.port, uplink(counter=0x00010001)) == 200
            assert wait_until(lambda: any(b and b["event"] == "panic" for b in disp.bodies()), 5)
            assert time.monotonic() - t0 < 3.0
            assert g.status()["broker"]["connected"] is False
            assert wait_until(lambda: g.status()["outbox"]["pending_alarms"] == 0, 5)
    finally:
        disp.close()


MOSQUITTO = shutil.which("mosquitto") or (
    "/usr/sbin/mosquitto" if os.path.exists("/usr/sbin/mosquitto") else None)


def test_events_and_status_reach_a_live_broker(tmp_path):
    if MOSQUITTO is None:
        if os.environ.get("CI") == "true":
            pytest.fail("mosquitto is required in CI")
        pytest.skip("mosquitto not installed")
    import paho.mqtt.client as paho

    port = free_port()
    conf = tmp_path / "m.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    broker = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    got: list[tuple[str, dict]] = []
    sub = paho.Client(paho.CallbackAPIVersion.VERSION2)
    sub.on_message = lambda c, u, m: got.append((m.topic, json.loads(m.payload)))
    try:
        def up() -> bool:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                return True
            except OSError:
                return False
        assert wait_until(up, 10)
        sub.connect("127.0.0.1", port)
        sub.subscribe("panic/gw-test/#", qos=1)
        sub.loop_start()
        cfg = _gw(tmp_path, mqtt={"enabled": True, "port": port})
        with GatewayThread(cfg) as g:
            assert post_frame(g.gw.http.port, uplink(counter=0x00010001)) == 200
            assert wait_until(lambda: any(t.endswith("/events") for t, _ in got))
            ev = next(p for t, p in got if t.endswith("/events"))
            assert ev["device_id"] == DEV and ev["type"] == "alarm"
            assert wait_until(lambda: any(t.endswith("/status") and p.get("state") == "online"
                                     for t, p in got))
            assert wait_until(lambda: any("/devices" in t for t, _ in got))
    finally:
        sub.loop_stop()
        sub.disconnect()
        broker.send_signal(signal.SIGTERM)
        broker.wait(10)


def test_malformed_http_refused_gateway_keeps_working(tmp_path):
    cfg = _gw(tmp_path, http={"max_body": 64})
    with GatewayThread(cfg) as g:
        port = g.gw.http.port
        for raw in (b"GARBAGE\r\n\r\n", b"POST /v1/frames HTTP/1.1\r\nHost: x\r\n"
                    b"Content-Length: nope\r\n\r\n", b"\x16\x03\x01\x00\xa5" + bytes(40)):
            c = socket.create_connection(("127.0.0.1", port))
            c.sendall(raw)
            c.settimeout(5)
            resp = c.recv(100)
            c.close()
            assert resp == b"" or resp.split(b" ")[1] == b"400", resp
        # chunked body without Content-Length, larger than max_body
        c = socket.create_connection(("127.0.0.1", port))
        chunk = bytes(200)
        c.sendall(b"POST /v1/frames HTTP/1.1\r\nHost: x\r\nContent-Type: application/"
                  b"octet-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
                  + b"%x\r\n" % len(chunk) + chunk + b"\r\n0\r\n\r\n")
        c.settimeout(5)
        assert c.recv(100).startswith(b"HTTP/1.1 413")
        c.close()
        assert post_frame(port, uplink(counter=0x00010002)) == 200


def test_alarm_fast_lane_needs_no_outbox_read_and_delivery_is_recorded(tmp_path):
    """The committed outbox item goes straight to the forwarder: with the forwarder's outbox
    reads returning nothing, the alarm still reaches dispatch, and its delivery (written on
    the store writer thread, the single writer) is on disk."""
    disp = DispatchThread()
    try:
        cfg = _gw(tmp_path, dispatch={"url": disp.srv.url, "allow_insecure_http": True})
        with GatewayThread(cfg) as g:
            reads: list[float] = []

            async def blind_due(now: float, limit: int) -> list:
                reads.append(now)
                return []

            g.run(setattr, g.gw.forwarder.store, "due", blind_due)
            assert post_frame(g.gw.http.port, uplink(counter=0x00010001)) == 200
            assert wait_until(lambda: any(b and b["event"] == "panic" for b in disp.bodies()), 5)
            assert wait_until(lambda: g.status()["outbox"]["pending_alarms"] == 0, 5)
            assert g.status()["outbox"]["delivered"] == 1
        s = Store(cfg.db_path)
        try:
            rows = s.db.execute("SELECT state, attempts FROM outbox WHERE priority = 0").fetchall()
        finally:
            s.close()
        assert rows == [("delivered", 1)], rows
    finally:
        disp.close()
