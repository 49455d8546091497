"""Fixtures for the cluster tests: a private Mosquitto on a free port (restartable on the same
port), cluster nodes on an event loop thread, a plain MQTT client, device records."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Callable, Coroutine, Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from mosquittokit import Broker, need_mosquitto  # noqa: F401 (the cluster tests' names)

from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.node import ClusterNode
from panicgw.cluster.settings import ClusterSettings
from panicgw.registry import DeviceRecord, SiteRecord

SECRET = bytes(range(32))
GROUP = "bandung"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait(pred: Callable[[], bool], timeout: float = 15.0) -> bool:
    """Liveness guard, not a timing assert."""
    end = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > end:
            return False
        time.sleep(0.02)
    return True


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    need_mosquitto()
    b = Broker(tmp_path, free_port())
    b.start()
    yield b
    b.stop()


class LoopThread:
    """An asyncio loop on its own thread: nodes' elections run there."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


@pytest.fixture
def loop() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


def settings(gw: str, port: int, **kw: Any) -> ClusterSettings:
    base: dict[str, Any] = {"host": "127.0.0.1", "port": port, "keepalive_s": 5,
                            "status_interval_s": 0.5, "stale_s": 5.0,
                            "digest_interval_s": 0.5, "reconnect_min_s": 0.1,
                            "reconnect_max_s": 0.5}
    base.update(kw)
    return ClusterSettings(gateway_id=gw, group=GROUP, **base)


class Nodes:
    """Cluster nodes made by the test, with what each was handed by the group's registry;
    all stopped at the end."""

    def __init__(self, loop: LoopThread) -> None:
        self.loop = loop
        self.made: list[ClusterNode] = []
        self.registry: dict[str, list[Any]] = {}

    def __call__(self, gw: str, port: int, *, secret: bytes = SECRET, start: bool = True,
                 **kw: Any) -> ClusterNode:
        got: list[Any] = self.registry.setdefault(gw, [])
        node = ClusterNode(settings(gw, port, **kw), GroupKeys(secret, GROUP),
                           on_registry=got.append)
        if start:
            node.start(self.loop.loop)
        self.made.append(node)
        return node

    def close(self) -> None:
        for n in self.made:
            n.stop(1.0)


@pytest.fixture
def nodes(loop: LoopThread) -> Iterator[Nodes]:
    made = Nodes(loop)
    yield made
    made.close()


class Plain:
    """A plain MQTT client: the broker's operator, or an intruder without the secret."""

    def __init__(self, port: int, topic: str = "#", **connect: Any) -> None:
        self.got: list[tuple[str, bytes, bool]] = []
        self.c = paho.Client(paho.CallbackAPIVersion.VERSION2,
                             client_id=f"plain-{time.monotonic_ns()}")
        ready = threading.Event()
        if connect.get("username"):
            self.c.username_pw_set(connect["username"], connect.get("password"))
        if connect.get("ca_file"):
            self.c.tls_set(ca_certs=connect["ca_file"], certfile=connect.get("certfile"),
                           keyfile=connect.get("keyfile"))
        self.c.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self.c.on_subscribe = lambda *a: ready.set()
        self.c.on_message = lambda c, u, m: self.got.append(
            (m.topic, bytes(m.payload), bool(m.retain)))
        self.c.connect("127.0.0.1", port, 30)
        self.c.loop_start()
        assert ready.wait(10), "plain client did not subscribe"

    def publish(self, topic: str, payload: bytes, retain: bool = False) -> None:
        self.c.publish(topic, payload, qos=1, retain=retain).wait_for_publish(5)

    def close(self) -> None:
        self.c.disconnect()
        self.c.loop_stop()


def record(device_id: int = 0x1234ABCD, key: bytes = bytes(range(16)), key_gen: int = 1,
           address: str = "Jl. Merdeka 12, Bandung") -> DeviceRecord:
    return DeviceRecord(device_id, key, SiteRecord("Toko Sinar Jaya", "shop", address, -6.9147,
                                                   107.6098, "Bu Sari", "+62 812 0000 0000"),
                        label="till", key_gen=key_gen)
