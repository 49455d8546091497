"""Serial ingest: the LoRa bridge on USB CDC (pyserial), speaking ``panicproto.link``.

Two threads own the port, and the event loop never touches it:

- the *reader* (a supervisor loop) finds the port (a configured path, or auto-detect by USB
  vendor id 0x239A, preferring CircuitPython's *data* channel), opens it, handshakes (PING ->
  PONG, STATUS request -> STATUS), pushes the gateway's radio settings with CONFIG and checks
  the STATUS the bridge answers with, then reads. RX frames go to the pipeline. When the
  bridge is unplugged, reads fail: the port is closed and reopened with exponential backoff,
  so reception resumes without restarting the gateway. A bridge that stops answering PINGs is
  treated as unplugged. Any other exception in the reader (a bug, a message we mishandle) is
  logged at a bounded rate, counted (``reader_errors``) and the link reopened: nothing ends
  LoRa reception for good. Should the thread still die, ``status()`` says ``reader_dead``.
- the *writer* takes messages from a bounded queue (PONGs, TX downlinks, CONFIG, PINGs) and
  writes them with pyserial's ``write_timeout``: a bridge that stops reading (a full USB
  buffer) costs dropped, counted messages, never a blocked event loop or reader. Downlinks
  are queued from the pipeline's completion callbacks on the loop, which never block.

Line garbage is counted by ``link.Decoder`` per reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import queue
import threading
import time
from typing import Any

import serial

from panicgw import pipeline as pl
from panicgw.ports import bridge_data_port
from panicgw.ratelimit import LogBudget
from panicproto import link
from panicproto.errors import ProtocolError

log = logging.getLogger("panicgw.serial")

# Bridge STATUS keys we compare with the config (several spellings accepted).
RADIO_KEYS = {
    "frequency_mhz": ("frequency_mhz", "freq_mhz", "frequency"),
    "spreading_factor": ("spreading_factor", "sf"),
    "bandwidth_hz": ("bandwidth_hz", "bw_hz", "bandwidth"),
    "coding_rate": ("coding_rate", "cr"),
    "tx_power_dbm": ("tx_power_dbm", "tx_power", "power_dbm"),
}

WRITE_TIMEOUT_S = 1.0  # one message is < 600 bytes: a second means the bridge is not reading
TX_QUEUE_MAX = 256  # messages waiting for the writer (a whole pipeline batch of ACKs fits);
# beyond that they are dropped and counted: a bridge that does not read cannot take them
CONFIG_REPLY_S = 3.0  # the bridge answers CONFIG at once; no answer by then = "no_reply"
CONFIG_RETRY_S = 30.0  # re-push after no reply, or when a STATUS shows other settings
STATUS_EVERY_S = 60.0  # refresh the bridge's STATUS (counters, noise floor) this often
LOG_LINES_PER_MIN = 6  # reader/writer faults and bridge LOG lines


def radio_config(cfg: dict[str, Any]) -> dict[str, Any]:
    """The CONFIG message for the bridge (panicbridge.config keys) from ``[serial]``."""
    return {"frequency_mhz": float(cfg["frequency_mhz"]), "sf": int(cfg["spreading_factor"]),
            "bw_hz": int(cfg["bandwidth_hz"]), "cr": int(cfg["coding_rate"]),
            "tx_power": int(cfg["tx_power_dbm"])}


def radio_mismatches(status: dict[str, Any], cfg: dict[str, Any]) -> list[str]:
    """Human-readable differences between the bridge's radio settings and the config."""
    out = []
    radio = status.get("radio") if isinstance(status.get("radio"), dict) else status
    for key, aliases in RADIO_KEYS.items():
        if key not in cfg:
            continue
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
        # supervision of the two threads
        self.reader_errors = 0
        self.writer_errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.write_timeouts = 0
        self.tx_dropped = 0  # messages dropped: queue full, or port gone before writing
        # (the writer thread alone counts tx_frames, write_timeouts and writer_errors)
        self._reader_beat = time.monotonic()  # the reader loop passes here at least every 50 ms
        self._log_budget = LogBudget(LOG_LINES_PER_MIN)
        self._bridge_log_budget = LogBudget(LOG_LINES_PER_MIN)
        # radio settings pushed with CONFIG (contract C6)
        self.config_state = "not_sent"  # not_sent | sent | applied | mismatch | rejected | no_reply
        self.config_detail: str | None = None
        self.config_at: float | None = None
        self.configs_sent = 0
        self._config_seq: int | None = None
        self._config_sent_mono = 0.0
        self._ser: serial.Serial | None = None
        self._session = 0
        self._plock = threading.Lock()  # port open/close vs a write in progress
        self._seq = 0
        self._seq_lock = threading.Lock()
        self._txq: queue.Queue[tuple[int, int, bytes, int] | None] = queue.Queue(TX_QUEUE_MAX)
        self._stop = threading.Event()
        self._paused = threading.Event()
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None
        self._pending_tx: set[asyncio.Future[Any]] = set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self._writer = threading.Thread(target=self._write_loop, name="serial-writer",
                                        daemon=True)
        self._writer.start()
        self._reader = threading.Thread(target=self._supervise, name="serial-bridge",
                                        daemon=True)
        self._reader.start()

    def pause_reading(self) -> None:
        """Stop taking new frames (graceful shutdown); downlinks can still be written."""
        self._paused.set()

    async def flush_downlinks(self, timeout: float) -> None:
        """Wait (up to ``timeout``) for in-flight frames' downlinks to be written."""
        end = time.monotonic() + timeout
        if self._pending_tx:
            await asyncio.wait(list(self._pending_tx), timeout=timeout)
        while self._txq.unfinished_tasks and time.monotonic() < end:
            await asyncio.sleep(0.02)

    async def stop(self) -> None:
        self._stop.set()
        loop = asyncio.get_running_loop()
        if self._reader is not None:
            await loop.run_in_executor(None, self._reader.join, 5.0)
        if self._writer is not None:
            try:
                self._txq.put_nowait(None)
            except queue.Full:
                pass  # the writer sees _stop within 0.2 s anyway
            await loop.run_in_executor(None, self._writer.join, WRITE_TIMEOUT_S + 2.0)
        self._close()

    # -- status ------------------------------------------------------------------------------

    def reader_state(self) -> tuple[bool, float]:
        """(reader thread alive, seconds since its loop last came round)."""
        alive = self._reader is not None and self._reader.is_alive()
        return alive, time.monotonic() - self._reader_beat

    def status(self) -> dict[str, Any]:
        alive, idle = self.reader_state()
        # Longest legitimate pause of the reader loop: a reconnect backoff.
        stall_after = float(self.cfg["reconnect_max_s"]) + 10.0
        state = self.state
        if self._reader is not None and not self._stop.is_set():
            if not alive:
                state = "reader_dead"
            elif idle > stall_after:
                state = "reader_stalled"
        return {
            "state": state,
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
            "radio_mismatches": list(self.mismatches),
            "radio_config": {
                "state": self.config_state, "detail": self.config_detail,
                "at": self.config_at, "sent": self.configs_sent,
                "settings": radio_config(self.cfg),
            },
            "reader": {
                "alive": alive, "idle_s": round(idle, 2), "errors": self.reader_errors,
                "last_error": self.last_error, "last_error_at": self.last_error_at,
            },
            "writer": {
                "alive": self._writer is not None and self._writer.is_alive(),
                "queued": self._txq.qsize(), "write_timeouts": self.write_timeouts,
                "errors": self.writer_errors, "dropped": self.tx_dropped,
            },
        }

    # -- writing (any thread; never blocks) ------------------------------------------------

    def _next_seq(self) -> int:
        with self._seq_lock:
            self._seq = (self._seq + 1) & 0xFF
            return self._seq

    def _drop(self) -> None:
        with self._seq_lock:  # dropped from the loop, the reader and the writer alike
            self.tx_dropped += 1

    def send(self, kind: int, payload: bytes = b"", seq: int | None = None) -> int | None:
        """Queue one message for the writer; its seq, or None when it was dropped (no port,
        or the queue is full because the bridge is not reading)."""
        if self._ser is None:
            self._drop()
            return None
        s = self._next_seq() if seq is None else seq & 0xFF
        try:
            self._txq.put_nowait((kind, s, bytes(payload), self._session))
        except queue.Full:
            self._drop()
            self._fault("serial write queue full: the bridge is not reading", None,
                        writer=True)
            return None
        return s

    def _write_loop(self) -> None:
        while True:
            try:
                item = self._txq.get(timeout=0.2)
            except queue.Empty:
                if self._stop.is_set():
                    return
                continue
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception as e:  # supervised: the writer never dies of a bad message
                self.writer_errors += 1
                self._fault("serial writer failed", e, writer=True)
            finally:
                self._txq.task_done()

    def _write(self, kind: int, seq: int, payload: bytes, session: int) -> None:
        data = link.encode(kind, seq, payload)
        with self._plock:
            ser = self._ser
            if ser is None or session != self._session:
                self._drop()  # queued for a connection that is gone
                return
            try:
                ser.write(data)
            except serial.SerialTimeoutException:
                self.write_timeouts += 1
                self._drop()
                self._fault(f"serial write timed out after {WRITE_TIMEOUT_S:g} s: the bridge "
                            "is not reading", None, writer=True)
                return
            except (serial.SerialException, OSError) as e:
                self._drop()
                self._fault("serial write failed", e, writer=True, trace=False)
                return
        if kind == link.TX:
            self.tx_frames += 1

    def _send_downlink(self, fut: asyncio.Future[pl.Outcome]) -> None:
        """Done-callback on the event loop: queue the signed downlink (never blocks)."""
        self._pending_tx.discard(fut)
        if fut.cancelled() or fut.exception() is not None:
            return
        out = fut.result()
        if out.downlink is not None:
            self.send(link.TX, out.downlink)

    # -- faults --------------------------------------------------------------------------

    def _fault(self, what: str, e: BaseException | None, *, writer: bool = False,
               trace: bool = True) -> None:
        """Remember and log (at a bounded rate) a fault of the reader or the writer."""
        text = what if e is None else f"{what}: {type(e).__name__}: {e}"
        self.last_error, self.last_error_at = text[:300], time.time()
        held = self._log_budget.take()
        if held is None:
            return
        fields = {"port": self.port, "thread": "writer" if writer else "reader",
                  "suppressed": held or None}
        if e is not None and trace:
            log.error(what, exc_info=(type(e), e, e.__traceback__), extra={"fields": fields})
        else:
            log.warning(text, extra={"fields": fields})

    # -- reader thread -------------------------------------------------------------------

    def _resolve(self) -> str | None:
        port = self.cfg["port"]
        if port == "auto":
            return bridge_data_port(self.cfg["usb_vid"])[0]
        return port if os.path.exists(port) else None

    def _close(self) -> None:
        with self._plock:
            ser, self._ser = self._ser, None
            self._session += 1
        if ser is not None:
            try:
                ser.close()
            except (serial.SerialException, OSError):
                pass
        while True:  # whatever was queued for that connection is void
            try:
                item = self._txq.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._drop()
            self._txq.task_done()
            if item is None:
                self._txq.put_nowait(None)  # keep the writer's stop signal
                break

    def _supervise(self) -> None:
        """The reader thread: connect, read, and on any failure log, count and reconnect."""
        backoff = 0.1
        while not self._stop.is_set():
            self._reader_beat = time.monotonic()
            try:
                backoff = self._attempt(backoff)
            except Exception as e:  # a fault of ours: never the end of reception
                self.reader_errors += 1
                self._fault("serial reader failed; reopening the bridge link", e)
                try:
                    self._set_state("disconnected", f"reader error: {type(e).__name__}: {e}")
                    self._close()
                except Exception as e2:
                    self._fault("serial reader could not close the port", e2)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, float(self.cfg["reconnect_max_s"]))

    def _attempt(self, backoff: float) -> float:
        """One connection: find, open, run the session. Returns the next backoff."""
        port = self._resolve()
        if port is None:
            self._set_state("missing")
            self._stop.wait(backoff)
            return min(backoff * 2, float(self.cfg["reconnect_max_s"]))
        try:
            ser = serial.Serial(port, self.cfg["baudrate"], timeout=0.05,
                                write_timeout=WRITE_TIMEOUT_S, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            self._set_state("missing", f"cannot open {port}: {e}")
            self._stop.wait(backoff)
            return min(backoff * 2, float(self.cfg["reconnect_max_s"]))
        with self._plock:
            self._ser = ser
            self._session += 1
        self.port = port
        self.connects += 1
        self._set_state("handshake")
        try:
            self._session_loop(ser)
            return 0.1
        except (serial.SerialException, OSError, TypeError) as e:
            # TypeError: pyserial on a vanished pty can fail inside select().
            self._set_state("disconnected", str(e))
            return 0.1
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

    def _push_config(self) -> None:
        """Send the gateway's radio settings; the bridge answers STATUS (applied) or LOG
        "config rejected: ..." with the same seq."""
        body = json.dumps(radio_config(self.cfg), separators=(",", ":")).encode()
        seq = self.send(link.CONFIG, body)
        self._config_sent_mono = time.monotonic()
        if seq is None:
            return
        self._config_seq = seq
        self.configs_sent += 1
        self.config_state, self.config_detail = "sent", None

    def _session_loop(self, ser: serial.Serial) -> None:
        ping_every = float(self.cfg["ping_interval_s"])
        decoder = self.decoder
        decoder.feed(b"\x00")  # a new connection starts a new stream: drop any partial frame
        self._config_seq = None
        self.config_state = "not_sent"
        self.send(link.PING, b"panicgw")
        self.send(link.STATUS)
        opened = last_ping = last_status = time.monotonic()
        pong_at: float | None = None
        while not self._stop.is_set():
            self._reader_beat = time.monotonic()
            data = ser.read(ser.in_waiting or 1)
            if data:
                for msg in decoder.feed(data):
                    if msg.kind == link.PONG:
                        pong_at = time.monotonic()
                        self.last_pong = time.time()
                        self._set_state("connected")
                        if self.config_state == "not_sent":
                            self._push_config()
                    else:
                        self._handle(msg)
            now = time.monotonic()
            if (self.config_state == "sent"
                    and now - self._config_sent_mono > CONFIG_REPLY_S):
                self.config_state = "no_reply"
                self.config_detail = (f"no answer to CONFIG within {CONFIG_REPLY_S:g} s: "
                                      "bridge firmware too old or busy")
                self.config_at = time.time()
                log.warning("bridge did not answer CONFIG", extra={"fields": {
                    "port": self.port}})
            if (self.config_state in ("no_reply", "mismatch")
                    and now - self._config_sent_mono > CONFIG_RETRY_S):
                self._push_config()
            if now - last_ping >= ping_every:
                last_ping = now
                if now - (pong_at or opened) > 3 * ping_every:
                    raise serial.SerialException("bridge not answering PING")
                self.send(link.PING, b"panicgw")
            if now - last_status >= STATUS_EVERY_S:
                last_status = now
                self.send(link.STATUS)

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
            self._on_status(msg)
        elif msg.kind == link.PING:
            self.send(link.PONG, msg.payload, seq=msg.seq)  # same bytes and seq
        elif msg.kind == link.LOG:
            text = msg.payload.decode("utf-8", "replace")
            if self._config_seq is not None and msg.seq == self._config_seq \
                    and text.startswith("config rejected"):
                self._config_seq = None
                self.config_state, self.config_detail = "rejected", text[:300]
                self.config_at = time.time()
                log.error("bridge refused the radio settings", extra={"fields": {
                    "port": self.port, "detail": text[:300],
                    "settings": radio_config(self.cfg)}})
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
        if self._config_seq is not None and msg.seq == self._config_seq:
            self._config_seq = None
            self.config_at = time.time()
            if self.mismatches:
                self.config_state = "mismatch"
                self.config_detail = ("the bridge accepted CONFIG but reports "
                                      + ", ".join(self.mismatches))
            else:
                self.config_state, self.config_detail = "applied", None
                log.info("bridge radio set from the config", extra={"fields": {
                    "port": self.port, "settings": radio_config(self.cfg)}})
                return
        if self.mismatches:
            log.warning("bridge radio settings differ from config",
                        extra={"fields": {"port": self.port,
                                          "differences": self.mismatches}})
            if self.config_state == "applied":
                # The bridge changed under us (a reset keeps the USB link up): push again.
                self.config_state = "mismatch"
                self.config_detail = "bridge reported other settings: " + ", ".join(
                    self.mismatches)
                if time.monotonic() - self._config_sent_mono > CONFIG_RETRY_S:
                    self._push_config()

    def _count(self, reason: str, detail: str) -> None:
        self.rejections.count(reason, detail, path="lora", source=self.port or "")

    def _submit(self, frame: pl.Frame) -> None:
        fut = self.processor.submit_nowait(frame)
        self._pending_tx.add(fut)
        fut.add_done_callback(self._send_downlink)
