"""The MQTT side of the cluster: paho-mqtt on its own threads, never blocking the caller.

Like :mod:`panicgw.forward.mqtt` (same reasons), callers only append to in-memory buffers:
a pump thread publishes and paho's ``loop_start`` thread does the network and reconnects with
backoff, so a broker that is down, slow or black-holed never delays an alarm.

- **While the broker is down** messages wait in a bounded buffer (oldest dropped, counted);
  *sticky* retained messages (this gateway's status and digest) keep only their latest
  version and are re-published after every (re)connect, which also repairs a broker that
  restarted without its retained store.
- **Session resume**: a fixed client id with ``clean_session=False``: after a short outage
  the broker still has our subscription and hands over the QoS 1 messages it queued for us;
  after a broker restart (sessions lost) the peers' retained digests and registry carry us
  over (:mod:`panicgw.cluster.node`).
- **Last will**: ``will()`` is asked before every connection attempt (paho's
  ``on_pre_connect``), so each connection's will names that connection.
- **Security**: TLS (CA file, optional client certificate and key) and per-gateway
  username/password, as the broker's ACL expects (docs/deployment.md).
- ``publish_delay_s`` holds every message back that long before it goes out: tests and the
  benchmark simulate a 4G round trip with it.
"""

from __future__ import annotations

import collections
import logging
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

import paho.mqtt.client as paho

log = logging.getLogger("panicgw.cluster")

MessageHandler = Callable[[str, bytes, bool], None]


class ClusterLink:
    """``start()``, then ``publish`` from anywhere; ``on_message(topic, payload, retained)``
    and ``on_connect()`` run on paho's network thread and must not block."""

    def __init__(
        self,
        host: str,
        port: int,
        client_id: str,
        *,
        subscriptions: tuple[str, ...] = (),
        on_message: MessageHandler | None = None,
        on_connect: Callable[[], None] | None = None,
        will: Callable[[], tuple[str, bytes]] | None = None,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str | None = None,
        client_cert: str | None = None,
        client_key: str | None = None,
        keepalive: int = 30,
        max_buffered: int = 10000,
        reconnect_min_s: float = 0.5,
        reconnect_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        publish_delay_s: float = 0.0,
    ) -> None:
        self.host, self.port, self.client_id = host, port, client_id
        self.subscriptions = subscriptions
        self.on_message = on_message
        self.on_connect = on_connect
        self.publish_delay_s = publish_delay_s
        self._will = will
        self._keepalive = keepalive
        self._max_buffered = max_buffered
        self._cond = threading.Condition()
        self._queue: collections.deque[tuple[float, str, bytes, bool]] = collections.deque()
        self._sticky: dict[str, bytes] = {}
        self._connected = False
        self._stopping = False
        self._started = False
        self._pump: threading.Thread | None = None
        self._last_info: paho.MQTTMessageInfo | None = None
        self.published = 0
        self.received = 0
        self.dropped = 0
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None

        c = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id,
                        clean_session=False, protocol=paho.MQTTv311)
        if username:
            c.username_pw_set(username, password or None)
        if tls or ca_file or client_cert:
            c.tls_set(ca_certs=ca_file or None, certfile=client_cert or None,
                      keyfile=client_key or None, tls_version=ssl.PROTOCOL_TLS_CLIENT)
        c.connect_timeout = connect_timeout_s
        c.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)
        c.max_queued_messages_set(max_buffered)
        c.on_pre_connect = self._on_pre_connect
        c.on_connect = self._on_connect
        c.on_disconnect = self._on_disconnect
        c.on_connect_fail = self._on_connect_fail
        c.on_message = self._on_message
        self._client = c

    # -- public API (thread-safe, never blocks on the network) -------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background; returns at once even when the broker is down."""
        if self._started:
            return
        self._started = True
        self._pump = threading.Thread(target=self._pump_main, name="cluster-pump",
                                      daemon=True)
        self._pump.start()
        self._client.connect_async(self.host, self.port, self._keepalive)
        self._client.loop_start()

    def publish(self, topic: str, payload: bytes, *, retain: bool = False,
                sticky: bool = False) -> None:
        """Queue one message (QoS 1). ``sticky``: retained and re-published after every
        reconnect; only its latest version waits while the broker is down."""
        due = time.monotonic() + self.publish_delay_s
        with self._cond:
            if sticky:
                self._sticky[topic] = payload
                self._queue = collections.deque(q for q in self._queue if q[1] != topic)
                retain = True
            elif len(self._queue) >= self._max_buffered:
                self._queue.popleft()
                self.dropped += 1
            self._queue.append((due, topic, payload, retain))
            self._cond.notify()

    def stop(self, timeout: float = 2.0, last: tuple[str, bytes] | None = None) -> None:
        """Flush what is queued (up to ``timeout``), publish ``last`` (retained: a goodbye
        that replaces the will) and disconnect."""
        if not self._started:
            return
        end = time.monotonic() + timeout
        with self._cond:
            if last is not None:
                self._queue.append((0.0, last[0], last[1], True))
                self._cond.notify()
            self._cond.wait_for(lambda: not self._queue or not self._connected,
                                max(0.0, end - time.monotonic()))
            self._stopping = True
            self._cond.notify_all()
        if self._pump is not None:
            self._pump.join(max(0.1, end - time.monotonic()))
        info = self._last_info
        if info is not None and self._connected:
            try:
                info.wait_for_publish(max(0.1, end - time.monotonic()))
            except (RuntimeError, ValueError):
                pass
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False
        self._started = False

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._queue)
        return {"broker": f"{self.host}:{self.port}", "connected": self._connected,
                "published": self.published, "received": self.received,
                "dropped": self.dropped, "queued": queued, "connects": self.connects,
                "disconnects": self.disconnects, "last_error": self.last_error}

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_pre_connect(self, client: paho.Client, userdata: Any) -> None:
        if self._will is not None:
            topic, payload = self._will()
            client.will_set(topic, payload, qos=1, retain=True)

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused: {reason}"
            log.warning("cluster broker %s:%s refused the connection: %s", self.host,
                        self.port, reason)
            return
        for topic in self.subscriptions:
            client.subscribe(topic, qos=1)
        if self.on_connect is not None:
            try:
                self.on_connect()
            except Exception:
                log.exception("cluster on_connect hook failed")
        with self._cond:
            self._connected = True
            self.connects += 1
            queued = {q[1] for q in self._queue}
            now = time.monotonic()
            for topic, payload in self._sticky.items():
                if topic not in queued:
                    self._queue.append((now, topic, payload, True))
            self._cond.notify_all()
        log.info("cluster link connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            was, self._connected = self._connected, False
            if was:
                self.disconnects += 1
            self._cond.notify_all()
        if was and not self._stopping:
            self.last_error = f"disconnected: {reason}"
            log.warning("cluster link lost %s:%s (%s); reconnecting in the background",
                        self.host, self.port, reason)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.host}:{self.port}"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        self.received += 1
        if self.on_message is None:
            return
        try:
            self.on_message(msg.topic, bytes(msg.payload), bool(msg.retain))
        except Exception:  # a bad message must never kill paho's thread
            log.exception("cluster message handler failed on %s", msg.topic)

    # -- pump thread -------------------------------------------------------------------------

    def _pump_main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._connected
                                                              and bool(self._queue)))
                if self._stopping:
                    return
                due, topic, payload, retain = self._queue[0]
                wait = due - time.monotonic()
                if wait > 0:
                    self._cond.wait(wait)
                    continue
                self._queue.popleft()
                if not self._queue:
                    self._cond.notify_all()  # stop() may be waiting for the flush
            if not self._send(topic, payload, retain):
                with self._cond:
                    self._queue.appendleft((0.0, topic, payload, retain))
                    self._cond.wait_for(lambda: self._stopping or not self._connected, 1.0)

    def _send(self, topic: str, payload: bytes, retain: bool) -> bool:
        try:
            info = self._client.publish(topic, payload, qos=1, retain=retain)
        except (ValueError, RuntimeError) as e:
            self.last_error = f"publish {topic}: {e}"
            return False
        if info.rc not in (paho.MQTT_ERR_SUCCESS, paho.MQTT_ERR_NO_CONN):
            self.last_error = f"publish {topic}: {paho.error_string(info.rc)}"
            return False
        # NO_CONN: paho keeps the QoS 1 message and sends it after its reconnect
        self._last_info = info
        self.published += 1
        return True
