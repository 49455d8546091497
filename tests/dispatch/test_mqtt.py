"""MqttPublisher against a private Mosquitto on a free port (fails in CI when it is missing)."""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mosquittokit import Broker, need_mosquitto

from panicgw.forward.mqtt import MqttPublisher

from .conftest import free_port


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    need_mosquitto()
    b = Broker(tmp_path, free_port())
    b.start()
    yield b
    b.stop()


def wait(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Liveness guard, not a timing assert."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


class Subscriber:
    def __init__(self, port: int, topic: str) -> None:
        self.messages: queue.Queue[tuple[str, Any, bool]] = queue.Queue()
        self.seen: list[tuple[str, Any, bool]] = []
        self.taken: set[int] = set()
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"sub-{time.time()}")
        ready = threading.Event()
        self.c.on_connect = lambda c, u, f, rc, p: (c.subscribe(topic, qos=1), None)[1]
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: self.messages.put(
            (m.topic, json.loads(m.payload), bool(m.retain)))
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        assert ready.wait(10), "subscriber did not subscribe"

    def next(self, pred: Callable[[str, Any, bool], bool], timeout: float = 15.0
             ) -> tuple[str, Any, bool]:
        """The first not yet returned message (in arrival order) that matches ``pred``."""
        end = time.monotonic() + timeout
        while True:
            for i, msg in enumerate(self.seen):
                if i not in self.taken and pred(*msg):
                    self.taken.add(i)
                    return msg
            left = end - time.monotonic()
            if left <= 0:
                raise AssertionError(f"expected MQTT message did not arrive; seen {self.seen}")
            try:
                self.seen.append(self.messages.get(timeout=left))
            except queue.Empty:
                continue

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def publisher(port: int, gw: str = "gw-t") -> MqttPublisher:
    return MqttPublisher("127.0.0.1", port, gw, reconnect_min_s=0.1, reconnect_max_s=0.5,
                         keepalive=5, connect_timeout_s=2.0)


def test_status_events_and_device_state(broker: Broker) -> None:
    pub = publisher(broker.port)
    live = Subscriber(broker.port, "panic/gw-t/#")
    try:
        pub.start()
        pub.gateway_status({"queue_depth": 0, "bridge": "connected"})
        assert wait(lambda: pub.connected)
        pub.event({"event": "panic", "incident_id": "X"})
        pub.device_state(0x1234ABCD, {"battery_mv": 3000, "supervision": "ok", "rssi": -90})
        topic, body, _ = live.next(lambda t, b, r: t.endswith("/events"))
        assert body["incident_id"] == "X"
        topic, body, _ = live.next(lambda t, b, r: t.endswith("/devices/1234ABCD"))
        assert body["battery_mv"] == 3000 and body["device_id"] == "1234ABCD"
        # A late subscriber gets the retained status and device state.
        late = Subscriber(broker.port, "panic/gw-t/#")
        _, status, retained = late.next(lambda t, b, r: t == "panic/gw-t/status")
        assert retained and status["state"] == "online" and status["bridge"] == "connected"
        _, dev, retained = late.next(lambda t, b, r: "/devices/" in t)
        assert retained and dev["supervision"] == "ok"
        late.close()
        pub.stop()
        _, status, _ = live.next(lambda t, b, r: t == "panic/gw-t/status"
                                 and b["state"] == "offline")
        assert status["reason"] == "shutdown"
        assert pub.stats()["published"] >= 3 and not pub.connected
    finally:
        pub.stop()
        live.close()


def test_last_will_when_the_gateway_dies(broker: Broker) -> None:
    code = (
        "import sys, time\n"
        "from panicgw.forward.mqtt import MqttPublisher\n"
        f"p = MqttPublisher('127.0.0.1', {broker.port}, 'gw-dies', keepalive=5)\n"
        "p.start()\n"
        "while not p.connected: time.sleep(0.02)\n"
        "p.gateway_status({'pid': 1})\n"
        "print('up', flush=True)\n"
        "time.sleep(60)\n"
    )
    sub = Subscriber(broker.port, "panic/gw-dies/status")
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == b"up"
        sub.next(lambda t, b, r: b["state"] == "online")
        proc.kill()  # no DISCONNECT: the broker must publish the will
        proc.wait(10)
        _, body, _ = sub.next(lambda t, b, r: b["state"] == "offline")
        assert body["reason"] == "connection lost"
        late = Subscriber(broker.port, "panic/gw-dies/status")
        _, body, retained = late.next(lambda t, b, r: True)
        assert retained and body["state"] == "offline"
        late.close()
    finally:
        proc.kill()
        sub.close()


def test_broker_down_never_blocks_and_reconnects(tmp_path: Path) -> None:
    need_mosquitto()
    port = free_port()
    b = Broker(tmp_path, port)
    pub = publisher(port, "gw-r")
    try:
        pub.start()  # broker not running yet
        done = threading.Event()

        def burst() -> None:
            for n in range(3000):
                pub.event({"n": n})
                pub.device_state(n % 7, {"n": n})
                pub.gateway_status({"n": n})
            done.set()

        threading.Thread(target=burst, daemon=True).start()
        assert done.wait(20), "publisher calls blocked while the broker is down"
        assert not pub.connected
        assert pub.stats()["dropped"] == 3000 - 1000  # bounded buffer, counted

        b.start()
        assert wait(lambda: pub.connected), "did not reconnect when the broker came up"
        for _ in range(2):  # first may race the flush (live copy); the second is retained
            late = Subscriber(port, "panic/gw-r/devices/00000006")
            _, body, retained = late.next(lambda t, bo, r: True)
            assert body["n"] == 2995  # only the latest state was kept through the outage
            late.close()
        assert retained

        # Broker dies under a connected publisher, calls still return, then it comes back.
        b.stop()
        assert wait(lambda: not pub.connected)
        done.clear()
        threading.Thread(target=burst, daemon=True).start()
        assert done.wait(20)
        b.start()
        assert wait(lambda: pub.connected)
        st = Subscriber(port, "panic/gw-r/status")
        _, body, _ = st.next(lambda t, bo, r: True)  # live or retained, depending on timing
        assert body["state"] == "online"  # re-published on reconnect
        st.close()
        st = Subscriber(port, "panic/gw-r/status")
        _, body, retained = st.next(lambda t, bo, r: True)
        assert retained and body["state"] == "online"
        st.close()
        assert pub.stats()["connects"] >= 2 and pub.stats()["disconnects"] >= 1
    finally:
        pub.stop()
        b.stop()
