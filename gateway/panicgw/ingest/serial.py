"""Serial ingest: the LoRa bridge on USB CDC (pyserial), speaking ``panicproto.link``.

The port and its two threads are serial_link.py's; this is the session run on each opened
port: handshake (PING -> PONG, STATUS request -> STATUS), push the gateway's radio settings
with CONFIG and check the STATUS the bridge answers with (bridge_radio.py), then read. RX
frames go to the pipeline; their downlinks are queued from the pipeline's completion
callbacks on the loop, which never block. A bridge that stops answering PINGs is treated as
unplugged. Line garbage is counted by ``link.Decoder`` per reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from typing import Any

import serial

from panicgw import pipeline as pl
from panicgw.ingest.bridge_radio import RadioConfig
from panicgw.ingest.serial_link import LOG_LINES_PER_MIN, SerialLink
from panicgw.radio import radio_mismatches
from panicgw.ratelimit import LogBudget
from panicproto import link
from panicproto.errors import ProtocolError

log = logging.getLogger("panicgw.serial")

STATUS_EVERY_S = 60.0  # refresh the bridge's STATUS (counters, noise floor) this often


class SerialIngest:
    def __init__(self, processor: pl.Processor, rejections: pl.Rejections,
                 cfg: dict[str, Any]) -> None:
        self.processor = processor
        self.rejections = rejections
        self.cfg = cfg
        self.link = SerialLink(cfg, self._session_loop)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.rx_frames = 0
        self.bridge_status: dict[str, Any] = {}
        self.mismatches: list[str] = []
        self.last_rx: float | None = None
        self.last_pong: float | None = None
        self.decoder = link.Decoder()
        self.radio = RadioConfig(cfg)  # radio settings pushed with CONFIG (contract C6)
        self._bridge_log_budget = LogBudget(LOG_LINES_PER_MIN)
        self._paused = threading.Event()
        self._pending_tx: set[asyncio.Future[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.link.start()

    def pause_reading(self) -> None:
        """Stop taking new frames (graceful shutdown); downlinks can still be written."""
        self._paused.set()

    async def flush_downlinks(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for in-flight frames' downlinks to be written."""
        end = time.monotonic() + timeout
        if self._pending_tx:
            await asyncio.wait(list(self._pending_tx), timeout=timeout)
        while self.link.txq.unfinished_tasks and time.monotonic() < end:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        await self.link.stop()

    # -- status ------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        ln = self.link
        alive, idle = ln.reader_state()
        # Longest legitimate pause of the reader loop: a reconnect backoff.
        stall_after = float(self.cfg["reconnect_max_s"]) + 10.0
        state = ln.state
        if ln.started() and not ln.stopping.is_set():
            if not alive:
                state = "reader_dead"
            elif idle > stall_after:
                state = "reader_stalled"
        return {
            "state": state,
            "port": ln.port,
            "connects": ln.connects,
            "disconnects": ln.disconnects,
            "rx_frames": self.rx_frames,
            "tx_frames": ln.tx_frames,
            "link_errors": dict(self.decoder.errors),
            "garbage_bytes": self.decoder.dropped,
            "last_rx": self.last_rx,
            "last_pong": self.last_pong,
            "missing_since": ln.missing_since,
            "bridge": self.bridge_status,
            "radio_mismatches": list(self.mismatches),
            "radio_config": self.radio.status(),
            "reader": {
                "alive": alive, "idle_s": round(idle, 2), "errors": ln.reader_errors,
                "last_error": ln.last_error, "last_error_at": ln.last_error_at,
            },
            "writer": {
                "alive": ln.writer_alive(), "queued": ln.txq.qsize(),
                "write_timeouts": ln.write_timeouts, "errors": ln.writer_errors,
                "dropped": ln.tx_dropped,
            },
        }

    # -- the session (reader thread) --------------------------------------------------------

    def _push_config(self) -> None:
        """Send the gateway's radio settings; the bridge answers STATUS (applied) or LOG
        "config rejected: ..." with the same seq."""
        body = json.dumps(self.radio.settings, separators=(",", ":")).encode()
        self.radio.pushed(self.link.send(link.CONFIG, body))

    def _session_loop(self, ser: serial.Serial) -> None:
        ping_every = float(self.cfg["ping_interval_s"])
        decoder = self.decoder
        decoder.feed(b"\x00")  # a new connection starts a new stream: drop any partial frame
        self.radio.reset()
        send = self.link.send
        send(link.PING, b"panicgw")
        send(link.STATUS)
        opened = last_ping = last_status = time.monotonic()
        pong_at: float | None = None
        while not self.link.stopping.is_set():
            self.link.beat()
            data = ser.read(ser.in_waiting or 1)
            if data:
                for msg in decoder.feed(data):
                    if msg.kind == link.PONG:
                        pong_at = time.monotonic()
                        self.last_pong = time.time()
                        self.link.set_state("connected")
                        if self.radio.state == "not_sent":
                            self._push_config()
                    else:
                        self._handle(msg)
            now = time.monotonic()
            if self.radio.timed_out(now):
                log.warning("bridge did not answer CONFIG", extra={"fields": {
                    "port": self.link.port}})
            if self.radio.due(now):
                self._push_config()
            if now - last_ping >= ping_every:
                last_ping = now
                if now - (pong_at or opened) > 3 * ping_every:
                    raise serial.SerialException("bridge not answering PING")
                send(link.PING, b"panicgw")
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                send(link.STATUS)

    def _handle(self, msg: link.Message) -> None:
        if msg.kind == link.RX:
            self.link.set_state("connected")
            try:
                radio, rssi, snr = link.parse_rx(msg.payload)
            except ProtocolError as e:
                self._count("link_" + e.reason, e.detail)
                return
            if self._paused.is_set():
                return  # shutting down: no ACK, the button retries to a running gateway
            self.rx_frames += 1
            self.last_rx = time.time()
            frame = pl.Frame(radio, "lora", rssi, snr, at=time.time(),
                             source=self.link.port or "")
            assert self.loop is not None
            self.loop.call_soon_threadsafe(self._submit, frame)
        elif msg.kind == link.STATUS:
            self._on_status(msg)
        elif msg.kind == link.PING:
            self.link.send(link.PONG, msg.payload, seq=msg.seq)  # same bytes and seq
        elif msg.kind == link.LOG:
            text = msg.payload.decode("utf-8", "replace")
            if self.radio.rejected(msg.seq, text):
                log.error("bridge refused the radio settings", extra={"fields": {
                    "port": self.link.port, "detail": text[:300],
                    "settings": self.radio.settings}})
                return
            held = self._bridge_log_budget.take()
            if held is not None:
                log.info("bridge: %s", text[:300], extra={"fields": {
                    "suppressed": held or None}})
        else:
            self._count("link_unexpected_type", link.TYPE_NAMES.get(msg.kind, str(msg.kind)))

    def _on_status(self, msg: link.Message) -> None:
        try:
            st = json.loads(msg.payload.decode("utf-8"))
            if not isinstance(st, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError):
            self._count("link_bad_status", "STATUS is not a JSON object")
            return
        self.bridge_status = st
        self.mismatches = radio_mismatches(st, self.cfg)
        if self.radio.answered(msg.seq, self.mismatches):
            log.info("bridge radio set from the config", extra={"fields": {
                "port": self.link.port, "settings": self.radio.settings}})
            return
        if self.mismatches:
            log.warning("bridge radio settings differ from config",
                        extra={"fields": {"port": self.link.port,
                                          "differences": self.mismatches}})
            if self.radio.changed(self.mismatches):
                self._push_config()

    def _count(self, reason: str, detail: str) -> None:
        self.rejections.count(reason, detail, path="lora", source=self.link.port or "")

    # -- the event loop ----------------------------------------------------------------------

    def _submit(self, frame: pl.Frame) -> None:
        fut = self.processor.submit_nowait(frame)
        self._pending_tx.add(fut)
        fut.add_done_callback(self._send_downlink)

    def _send_downlink(self, fut: asyncio.Future[pl.Outcome]) -> None:
        """Done-callback on the event loop: queue the signed downlink (never blocks)."""
        self._pending_tx.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            return
        out = fut.result()
        if out.downlink is not None:
            self.link.send(link.TX, out.downlink)
