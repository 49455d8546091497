"""Serial ingest: the LoRa bridge on USB CDC (pyserial), speaking ``panicproto.link``.

One reader thread owns the port's lifecycle: find it (a configured path, or auto-detect by
USB vendor id 0x239A, preferring CircuitPython's *data* channel), open it, handshake (PING ->
PONG, STATUS request -> STATUS), then read. Received RX frames go to the pipeline; the
downlink it returns is sent back as TX at once (the button listens only briefly). When the
bridge is unplugged, reads fail: the thread closes the port and retries with exponential
backoff, so reception resumes without restarting the gateway. A bridge that stops answering
PINGs is treated as unplugged. Line garbage is counted by ``link.Decoder`` per reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import threading
import time
from typing import Any

import serial
from serial.tools import list_ports

from panicgw import pipeline as pl
from panicproto import link
from panicproto.errors import ProtocolError

log = logging.getLogger("panicgw.serial")

# Bridge STATUS keys we compare with the config (several spellings accepted).
RADIO_KEYS = {
    "frequency_mhz": ("frequency_mhz", "freq_mhz", "frequency"),
    "spreading_factor": ("spreading_factor", "sf"),
    "bandwidth_hz": ("bandwidth_hz", "bw_hz", "bandwidth"),
    "tx_power_dbm": ("tx_power_dbm", "tx_power", "power_dbm"),
}


def find_bridge_port(vid: int) -> str | None:
    """Device path of the bridge's data channel among USB serial ports with vendor ``vid``.

    CircuitPython exposes the REPL console first and the data channel second; the data one
    names itself "CDC2"/"data" in its interface string when the OS reports it.
    """
    ports = [p for p in list_ports.comports() if p.vid == vid]
    if not ports:
        return None

    def rank(p: Any) -> tuple[int, str]:
        text = f"{p.interface or ''} {p.description or ''}".lower()
        return (0 if ("data" in text or "cdc2" in text) else 1, p.location or p.device)

    ports.sort(key=rank)
    if len(ports) > 1 and rank(ports[0])[0] == 1:
        return sorted(ports, key=lambda p: p.location or p.device)[-1].device
    return str(ports[0].device)


def radio_mismatches(status: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Human-readable differences between the bridge's radio settings and the config."""
    out = []
    radio = status.get("radio") if isinstance(status.get("radio"), dict) else status
    for key, aliases in RADIO_KEYS.items():
        for a in aliases:
            if a in radio:
                have = radio[a]
                want = cfg[key]
                if key == "frequency_mhz" and isinstance(have, int | float) and have > 1e5:
                    have = have / 1e6  # reported in Hz
                try:
                    same = abs(float(have) - float(want)) < 1e-3
                except (TypeError, ValueError):
                    same = False
                if not same:
                    out.append(f"{key}: bridge {have}, config {want}")
                break
    return out


class SerialIngest:
    def __init__(self, processor: pl.Processor, rejections: pl.Rejections,
                 cfg: dict[str, Any]) -> None:
        self.processor = processor
        self.rejections = rejections
        self.cfg = cfg
        self.loop: asyncio.AbstractEventLoop | None = None
        self.state = "starting"
        self.port: str | None = None
        self.connects = 0
        self.disconnects = 0
        self.rx_frames = 0
        self.tx_frames = 0
        self.bridge_status: dict[str, Any] = {}
        self.mismatches: list[str] = []
        self.last_rx: float | None = None
        self.last_pong: float | None = None
        self.missing_since: float | None = time.time()
        self.decoder = link.Decoder()
        self._ser: serial.Serial | None = None
        self._wlock = threading.Lock()
        self._seq = 0
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._thread: threading.Thread | None = None
        self._pending_tx: set[asyncio.Future[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._thread = threading.Thread(target=self._run, name="serial-bridge", daemon=True)
        self._thread.start()

    def pause_reading(self) -> None:
        """Stop taking new frames (graceful shutdown); downlinks can still be written."""
        self._paused.set()

    async def flush_downlinks(self, timeout: float) -> None:
        if self._pending_tx:
            await asyncio.wait(list(self._pending_tx), timeout=timeout)

    async def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            await asyncio.get_running_loop().run_in_executor(None, self._thread.join, 5.0)
        self._close()

    def status(self) -> dict[str, Any]:
        return {
            "state": self.state,
            "port": self.port,
            "connects": self.connects,
            "disconnects": self.disconnects,
            "rx_frames": self.rx_frames,
            "tx_frames": self.tx_frames,
            "link_errors": dict(self.decoder.errors),
            "garbage_bytes": self.decoder.dropped,
            "last_rx": self.last_rx,
            "last_pong": self.last_pong,
            "missing_since": self.missing_since,
            "bridge": self.bridge_status,
            "radio_mismatches": self.mismatches,
        }

    # -- writing (any thread) --------------------------------------------------------------------

    def send(self, kind: int, payload: bytes = b"") -> bool:
        with self._wlock:
            ser = self._ser
            if ser is None:
                return False
            self._seq = (self._seq + 1) & 0xFF
            try:
                ser.write(link.encode(kind, self._seq, payload))
                ser.flush()
            except (serial.SerialException, OSError) as e:
                log.warning("serial write failed", extra={"fields": {"error": str(e)}})
                return False
        return True

    def _send_downlink(self, fut: asyncio.Future[pl.Outcome]) -> None:
        self._pending_tx.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            return
        out = fut.result()
        if out.downlink is not None and self.send(link.TX, out.downlink):
            self.tx_frames += 1

    # -- reader thread -------------------------------------------------------------------

    def _resolve(self) -> str | None:
        port = self.cfg["port"]
        if port == "auto":
            return find_bridge_port(self.cfg["usb_vid"])
        return port if os.path.exists(port) else None

    def _close(self) -> None:
        with self._wlock:
            ser, self._ser = self._ser, None
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass

    def _run(self) -> None:
        backoff = 0.1
        while not self._stop.is_set():
            port = self._resolve()
            if port is None:
                self._set_state("missing")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg["reconnect_max_s"])
                continue
            try:
                ser = serial.Serial(port, self.cfg["baudrate"], timeout=0.05, exclusive=True)
            except (serial.SerialException, OSError, ValueError) as e:
                self._set_state("missing", f"cannot open {port}: {e}")
                self._stop.wait(backoff)
                backoff = min(backoff * 2, self.cfg["reconnect_max_s"])
                continue
            with self._wlock:
                self._ser = ser
            self.port = port
            self.connects += 1
            self._set_state("handshake")
            try:
                self._session(ser)
                backoff = 0.1
            except (serial.SerialException, OSError, TypeError) as e:
                # TypeError: pyserial on a vanished pty can fail inside select().
                self._set_state("disconnected", str(e))
            finally:
                self.disconnects += 1
                self._close()

    def _set_state(self, state: str, detail: str = "") -> None:
        if state == self.state:
            return
        level = logging.INFO if state in ("connected", "handshake") else logging.WARNING
        log.log(level, "bridge %s", state, extra={"fields": {"port": self.port,
                                                            "detail": detail or None}})
        self.state = state
        if state == "connected":
            self.missing_since = None
        elif self.missing_since is None:
            self.missing_since = time.time()

    def _session(self, ser: serial.Serial) -> None:
        ping_every = self.cfg["ping_interval_s"]
        decoder = self.decoder
        decoder.feed(b"\x00")  # a new connection starts a new stream: drop any partial frame
        self.send(link.PING, b"panicgw")
        self.send(link.STATUS)
        opened = last_ping = time.monotonic()
        pong_at: float | None = None
        while not self._stop.is_set():
            data = ser.read(ser.in_waiting or 1)
            if data:
                for msg in decoder.feed(data):
                    if msg.kind == link.PONG:
                        pong_at = time.monotonic()
                        self.last_pong = time.time()
                        self._set_state("connected")
                    else:
                        self._handle(msg)
            now = time.monotonic()
            if now - last_ping >= ping_every:
                last_ping = now
                if now - (pong_at or opened) > 3 * ping_every:
                    raise serial.SerialException("bridge not answering PING")
                self.send(link.PING, b"panicgw")

    def _handle(self, msg: link.Message) -> None:
        if msg.kind == link.RX:
            self._set_state("connected")
            try:
                radio, rssi, snr = link.parse_rx(msg.payload)
            except ProtocolError as e:
                self._count("link_" + e.reason, e.detail)
                return
            if self._paused.is_set():
                return  # shutting down: no ACK, the button retries to a running gateway
            self.rx_frames += 1
            self.last_rx = time.time()
            frame = pl.Frame(radio, "lora", rssi, snr, at=time.time(), source=self.port or "")
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._submit, frame)
        elif msg.kind == link.STATUS:
            try:
                st = json.loads(msg.payload.decode("utf-8"))
                if not isinstance(st, dict):
                    raise ValueError("not an object")
            except (ValueError, UnicodeDecodeError):
                self._count("link_bad_status", "STATUS is not a JSON object")
                return
            self.bridge_status = st
            self.mismatches = radio_mismatches(st, self.cfg)
            if self.mismatches:
                log.warning("bridge radio settings differ from config",
                            extra={"fields": {"port": self.port,
                                              "differences": self.mismatches}})
        elif msg.kind == link.PING:
            self.send(link.PONG, msg.payload)
        elif msg.kind == link.LOG:
            log.info("bridge: %s", msg.payload.decode("utf-8", "replace")[:300])
        else:
            self._count("link_unexpected_type", link.TYPE_NAMES.get(msg.kind, str(msg.kind)))

    def _count(self, reason: str, detail: str) -> None:
        assert self.loop is not None
        self.loop.call_soon_threadsafe(self.rejections.count, reason, detail)

    def _submit(self, frame: pl.Frame) -> None:
        fut = self.processor.submit_nowait(frame)
        self._pending_tx.add(fut)
        fut.add_done_callback(self._send_downlink)
