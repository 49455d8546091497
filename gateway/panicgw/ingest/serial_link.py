"""The bridge's serial port, owned by two supervised threads; the event loop never touches it.

- the *reader* (a supervisor loop) finds the port (a configured path, or auto-detect by USB
  vendor id 0x239A, preferring CircuitPython's *data* channel: panicgw.ports), opens it and
  runs the session it was given (serial.py: handshake, then reading). When the bridge is
  unplugged, reads fail: the port is closed and reopened with exponential backoff, so
  reception resumes without restarting the gateway. Any other exception in the session (a
  bug, a message we mishandle) is logged at a bounded rate, counted (``reader_errors``) and
  the link reopened: nothing ends LoRa reception for good. Should the thread still die,
  :meth:`SerialLink.reader_state` tells.
- the *writer* takes link messages from a bounded queue (PONGs, TX downlinks, CONFIG, PINGs)
  and writes them with pyserial's ``write_timeout``: a bridge that stops reading (a full USB
  buffer) costs dropped, counted messages, never a blocked event loop or reader.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
from collections.abc import Callable
from typing import Any

import serial

from panicgw.ports import bridge_data_port
from panicgw.ratelimit import LogBudget
from panicproto import link

log = logging.getLogger("panicgw.serial")

WRITE_TIMEOUT_S = 1.0  # one message is < 600 bytes: a second means the bridge is not reading
TX_QUEUE_MAX = 256  # messages waiting for the writer (a whole pipeline batch of ACKs fits);
# beyond that they are dropped and counted: a bridge that does not read cannot take them
LOG_LINES_PER_MIN = 6  # reader/writer faults (and, in serial.py, bridge LOG lines)

Session = Callable[[serial.Serial], None]


class SerialLink:
    """The port, its reader and writer threads, and their books.

    ``session(ser)`` runs on the reader thread for each opened port until it returns or
    raises; a serial error ends the connection, anything else is a supervised fault.
    """

    def __init__(self, cfg: dict[str, Any], session: Session) -> None:
        self.cfg = cfg
        self._session_fn = session
        self.state = "starting"
        self.port: str | None = None
        self.connects = 0
        self.disconnects = 0
        self.missing_since: float | None = time.time()
        self.reader_errors = 0
        self.writer_errors = 0
        self.last_error: str | None = None
        self.last_error_at: float | None = None
        self.tx_frames = 0
        self.write_timeouts = 0
        self.tx_dropped = 0  # messages dropped: queue full, or port gone before writing
        # (the writer thread alone counts tx_frames, write_timeouts and writer_errors)
        self._reader_beat = time.monotonic()  # the reader loop passes here at least every 50 ms
        self._log_budget = LogBudget(LOG_LINES_PER_MIN)
        self._ser: serial.Serial | None = None
        self._session = 0
        self._plock = threading.Lock()  # port open/close vs a write in progress
        self._seq = 0
        self._seq_lock = threading.Lock()
        self.txq: queue.Queue[tuple[int, int, bytes, int] | None] = queue.Queue(TX_QUEUE_MAX)
        self.stopping = threading.Event()
        self._reader: threading.Thread | None = None
        self._writer: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self._writer = threading.Thread(target=self._write_loop, name="serial-writer",
                                        daemon=True)
        self._writer.start()
        self._reader = threading.Thread(target=self._supervise, name="serial-bridge",
                                        daemon=True)
        self._reader.start()

    async def stop(self) -> None:
        """Stop both threads (joined off the event loop) and close the port."""
        self.stopping.set()
        loop = asyncio.get_running_loop()
        if self._reader is not None:
            await loop.run_in_executor(None, self._reader.join, 5.0)
        if self._writer is not None:
            try:
                self.txq.put_nowait(None)
            except queue.Full:
                pass  # the writer sees the stop within 0.2 s anyway
            await loop.run_in_executor(None, self._writer.join, WRITE_TIMEOUT_S + 2.0)
        self._close()

    def started(self) -> bool:
        return self._reader is not None

    def reader_state(self) -> tuple[bool, float]:
        """(reader thread alive, seconds since its loop last came round)."""
        alive = self._reader is not None and self._reader.is_alive()
        return alive, time.monotonic() - self._reader_beat

    def writer_alive(self) -> bool:
        return self._writer is not None and self._writer.is_alive()

    def beat(self) -> None:
        """The reader loop came round (called by the session at every read)."""
        self._reader_beat = time.monotonic()

    def set_state(self, state: str, detail: str = "") -> None:
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
            self.txq.put_nowait((kind, s, bytes(payload), self._session))
        except queue.Full:
            self._drop()
            self.fault("serial write queue full: the bridge is not reading", None,
                       writer=True)
            return None
        return s

    def _write_loop(self) -> None:
        while True:
            try:
                item = self.txq.get(timeout=0.2)
            except queue.Empty:
                if self.stopping.is_set():
                    return
                continue
            try:
                if item is None:
                    return
                self._write(*item)
            except Exception as e:  # supervised: the writer never dies of a bad message
                self.writer_errors += 1
                self.fault("serial writer failed", e, writer=True)
            finally:
                self.txq.task_done()

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
                self.fault(f"serial write timed out after {WRITE_TIMEOUT_S:g} s: the bridge "
                           "is not reading", None, writer=True)
                return
            except (serial.SerialException, OSError) as e:
                self._drop()
                self.fault("serial write failed", e, writer=True, trace=False)
                return
        if kind == link.TX:
            self.tx_frames += 1

    # -- faults --------------------------------------------------------------------------

    def fault(self, what: str, e: BaseException | None, *, writer: bool = False,
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
                item = self.txq.get_nowait()
            except queue.Empty:
                break
            if item is not None:
                self._drop()
            self.txq.task_done()
            if item is None:
                self.txq.put_nowait(None)  # keep the writer's stop signal
                break

    def _supervise(self) -> None:
        """The reader thread: connect, read, and on any failure log, count and reconnect."""
        backoff = 0.1
        while not self.stopping.is_set():
            self.beat()
            try:
                backoff = self._attempt(backoff)
            except Exception as e:  # a fault of ours: never the end of reception
                self.reader_errors += 1
                self.fault("serial reader failed; reopening the bridge link", e)
                try:
                    self.set_state("disconnected", f"reader error: {type(e).__name__}: {e}")
                    self._close()
                except Exception as e2:
                    self.fault("serial reader could not close the port", e2)
                self.stopping.wait(backoff)
                backoff = min(backoff * 2, float(self.cfg["reconnect_max_s"]))

    def _attempt(self, backoff: float) -> float:
        """One connection: find, open, run the session. Returns the next backoff."""
        port = self._resolve()
        if port is None:
            self.set_state("missing")
            self.stopping.wait(backoff)
            return min(backoff * 2, float(self.cfg["reconnect_max_s"]))
        try:
            ser = serial.Serial(port, self.cfg["baudrate"], timeout=0.05,
                                write_timeout=WRITE_TIMEOUT_S, exclusive=True)
        except (serial.SerialException, OSError, ValueError) as e:
            self.set_state("missing", f"cannot open {port}: {e}")
            self.stopping.wait(backoff)
            return min(backoff * 2, float(self.cfg["reconnect_max_s"]))
        with self._plock:
            self._ser = ser
            self._session += 1
        self.port = port
        self.connects += 1
        self.set_state("handshake")
        try:
            self._session_fn(ser)
            return 0.1
        except (serial.SerialException, OSError, TypeError) as e:
            # TypeError: pyserial on a vanished pty can fail inside select().
            self.set_state("disconnected", str(e))
            return 0.1
        finally:
            self.disconnects += 1
            self._close()
