"""MQTT status/event publisher (contract 4): never on the alarm's critical path.

Topics (``<gw>`` is the gateway id):
- ``panic/<gw>/status``  retained JSON ``{"state": "online"|"offline", ...}``; the broker
  publishes the ``offline`` last will when the gateway vanishes without saying goodbye.
- ``panic/<gw>/events``  JSON per stored event (not retained).
- ``panic/<gw>/devices/<ID>``  retained JSON per device (8 hex digit id): last heard,
  battery, RSSI/SNR, supervision state.

Why a pump thread: callers (the daemon's event loop) only append to in-memory buffers and
notify; every paho call happens on our own thread or paho's network thread, so a broker
that is down, slow or black-holed can never delay the caller. paho's ``loop_start`` does
the reconnecting with backoff. While disconnected, events are buffered up to
``max_buffered`` (oldest dropped and counted) and only the latest state per device is kept;
after every (re)connect the status and all device states are re-published, so a broker
that lost its retained store is repaired.
"""

from __future__ import annotations

import collections
import json
import logging
import threading
import time
from typing import Any

import paho.mqtt.client as paho

from panicgw.forward.payload import device_hex, rfc3339
from panicgw.tls import client_context

log = logging.getLogger("panicgw.mqtt")


def topics(gateway_id: str) -> dict[str, str]:
    base = f"panic/{gateway_id}"
    return {"status": f"{base}/status", "events": f"{base}/events",
            "devices": f"{base}/devices"}


class MqttPublisher:
    """``start()`` once, then ``gateway_status``/``event``/``device_state`` from anywhere."""

    def __init__(
        self,
        host: str,
        port: int,
        gateway_id: str,
        *,
        username: str = "",
        password: str = "",
        tls: bool = False,
        ca_file: str | None = None,
        keepalive: int = 30,
        qos: int = 1,
        max_buffered: int = 1000,
        reconnect_min_s: float = 1.0,
        reconnect_max_s: float = 30.0,
        connect_timeout_s: float = 5.0,
        client_id: str | None = None,
    ) -> None:
        if not gateway_id or any(c in gateway_id for c in "+#/"):
            raise ValueError("gateway id must be non-empty without MQTT wildcards or '/'")
        self.host = host
        self.port = port
        self.gateway_id = gateway_id
        self.qos = qos
        self.topics = topics(gateway_id)
        self._keepalive = keepalive
        self._cond = threading.Condition()
        self._events: collections.deque[str] = collections.deque()
        self._max_buffered = max_buffered
        self._devices: dict[str, str] = {}
        self._dirty: set[str] = set()
        self._status: dict[str, Any] = {}
        self._status_dirty = True
        self._connected = False
        self._stopping = False
        self._started = False
        self._pump: threading.Thread | None = None
        # diagnostics
        self.published = 0
        self.dropped = 0
        self.connects = 0
        self.disconnects = 0
        self.last_error: str | None = None

        self._client = paho.Client(
            paho.CallbackAPIVersion.VERSION2,
            client_id=client_id or f"panicgw-{gateway_id}",
            clean_session=True,
        )
        if username:
            self._client.username_pw_set(username, password or None)
        if tls:
            self._client.tls_set_context(client_context(ca_file))
        self._client.connect_timeout = connect_timeout_s
        self._client.reconnect_delay_set(min_delay=reconnect_min_s, max_delay=reconnect_max_s)
        self._client.max_queued_messages_set(max_buffered)
        self._client.will_set(
            self.topics["status"],
            json.dumps({"state": "offline", "gateway_id": gateway_id,
                        "reason": "connection lost"}),
            qos=1, retain=True,
        )
        self._client.on_connect = self._on_connect
        self._client.on_disconnect = self._on_disconnect
        self._client.on_connect_fail = self._on_connect_fail

    # -- public API (thread-safe, never blocks on the network) -------------------------------

    @property
    def connected(self) -> bool:
        return self._connected

    def start(self) -> None:
        """Connect in the background; returns at once even when the broker is down."""
        if self._started:
            return
        self._started = True
        self._pump = threading.Thread(target=self._pump_main, name="mqtt-pump", daemon=True)
        self._pump.start()
        self._client.connect_async(self.host, self.port, self._keepalive)
        self._client.loop_start()

    def stop(self, timeout: float = 2.0) -> None:
        """Publish ``offline`` (retained, best effort within ``timeout``) and disconnect."""
        if not self._started or self._stopping:
            return
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._pump is not None:
            self._pump.join(timeout)
        if self._connected:
            try:
                info = self._client.publish(
                    self.topics["status"],
                    json.dumps({"state": "offline", "gateway_id": self.gateway_id,
                                "reason": "shutdown", "at": rfc3339(time.time())}),
                    qos=1, retain=True,
                )
                info.wait_for_publish(timeout)
            except (RuntimeError, ValueError) as e:
                self.last_error = f"offline status not published: {e}"
        self._client.disconnect()
        self._client.loop_stop()
        self._connected = False

    def gateway_status(self, status: dict[str, Any]) -> None:
        """Replace the retained status details (queue depth, bridge state, counters...)."""
        with self._cond:
            self._status = dict(status)
            self._status_dirty = True
            self._cond.notify()

    def event(self, event: dict[str, Any]) -> None:
        """Publish one event (buffered while the broker is unreachable)."""
        text = json.dumps(event, default=str, separators=(",", ":"))
        with self._cond:
            if len(self._events) >= self._max_buffered:
                self._events.popleft()
                self.dropped += 1
            self._events.append(text)
            self._cond.notify()

    def device_state(self, device_id: int, state: dict[str, Any]) -> None:
        """Set a device's retained state (only the latest is kept while disconnected)."""
        dev = device_hex(device_id)
        text = json.dumps({"device_id": dev, **state}, default=str, separators=(",", ":"))
        with self._cond:
            self._devices[dev] = text
            self._dirty.add(dev)
            self._cond.notify()

    def stats(self) -> dict[str, Any]:
        with self._cond:
            queued = len(self._events) + len(self._dirty) + int(self._status_dirty)
        return {"broker": f"{self.host}:{self.port}", "connected": self._connected,
                "published": self.published, "dropped": self.dropped, "queued": queued,
                "connects": self.connects, "disconnects": self.disconnects,
                "last_error": self.last_error}

    # -- paho callbacks (paho's network thread) ----------------------------------------------

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                    properties: Any) -> None:
        if reason.is_failure:
            self.last_error = f"broker refused: {reason}"
            log.warning("MQTT broker %s:%s refused the connection: %s", self.host, self.port,
                        reason)
            return
        with self._cond:
            self._connected = True
            self.connects += 1
            self._status_dirty = True
            self._dirty.update(self._devices)
            self._cond.notify()
        log.info("MQTT connected to %s:%s", self.host, self.port)

    def _on_disconnect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any,
                       properties: Any) -> None:
        with self._cond:
            was = self._connected
            self._connected = False
            if was:
                self.disconnects += 1
        if was and not self._stopping:
            self.last_error = f"disconnected: {reason}"
            log.warning("MQTT disconnected from %s:%s (%s); reconnecting in the background",
                        self.host, self.port, reason)

    def _on_connect_fail(self, client: paho.Client, userdata: Any) -> None:
        self.last_error = f"cannot connect to {self.host}:{self.port}"

    # -- pump thread -------------------------------------------------------------------------

    def _pump_main(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopping or (self._connected and (
                    self._status_dirty or self._dirty or self._events)))
                if self._stopping:
                    return
                status = self._status if self._status_dirty else None
                self._status_dirty = False
                devices = [(d, self._devices[d]) for d in self._dirty]
                self._dirty.clear()
                events = list(self._events)
                self._events.clear()
            failed = self._publish_all(status, devices, events)
            if failed:
                with self._cond:  # put back what did not go out; retry after reconnect
                    s, d, e = failed
                    if s is not None and not self._status_dirty:
                        self._status, self._status_dirty = s, True
                    for dev, _ in d:
                        self._dirty.add(dev)
                    self._events.extendleft(reversed(e))
                    while len(self._events) > self._max_buffered:
                        self._events.popleft()
                        self.dropped += 1
                    # wait for the next connect instead of spinning
                    self._cond.wait_for(lambda: self._stopping or not self._connected, 1.0)

    def _publish_all(
        self, status: dict[str, Any] | None, devices: list[tuple[str, str]], events: list[str]
    ) -> tuple[dict[str, Any] | None, list[tuple[str, str]], list[str]] | None:
        if status is not None:
            body = json.dumps({"state": "online", "gateway_id": self.gateway_id,
                               "at": rfc3339(time.time()), **status}, default=str)
            if not self._pub(self.topics["status"], body, True):
                return status, devices, events
        for i, (dev, text) in enumerate(devices):
            if not self._pub(f"{self.topics['devices']}/{dev}", text, True):
                return None, devices[i:], events
        for i, text in enumerate(events):
            if not self._pub(self.topics["events"], text, False):
                return None, [], events[i:]
        return None

    def _pub(self, topic: str, payload: str, retain: bool) -> bool:
        try:
            info = self._client.publish(topic, payload, qos=self.qos, retain=retain)
        except (ValueError, RuntimeError) as e:
            self.last_error = f"publish {topic}: {e}"
            return False
        if info.rc == paho.MQTT_ERR_NO_CONN and self.qos > 0:
            pass  # paho keeps QoS>=1 messages and sends them after its reconnect
        elif info.rc != paho.MQTT_ERR_SUCCESS:
            self.last_error = f"publish {topic}: {paho.error_string(info.rc)}"
            return False
        self.published += 1
        return True
