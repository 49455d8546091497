"""A pty peer that speaks panicproto.link like the bridge does (PONG, STATUS, CONFIG, RX,
reads TX), replying with the request's seq as the bridge firmware does.

"Unplugging" closes the pty master (the gateway's reads then fail as with a vanished USB
device); "plugging back" makes a new pty and points the same symlink at it, as udev's
/dev/serial/by-id/ links do for a re-enumerated device. ``reading = False`` stops reading
the pty altogether (a wedged bridge): once the pty's buffer is full the gateway's writes
stall.
"""

from __future__ import annotations

import json
import os
import select
import threading
import time
from pathlib import Path

from panicproto import link


class PtyBridge:
    def __init__(self, link_path: Path, status: dict | None = None) -> None:
        self.link_path = link_path
        self.status = status or {"firmware": "sim-bridge 0.1", "radio": {
            "frequency_mhz": 921.4, "sf": 9, "bw_hz": 125000, "cr": 5, "tx_power": 14}}
        self.tx: list[bytes] = []
        self.configs: list[dict] = []
        self.messages: list[link.Message] = []  # everything the gateway sent, in order
        self.pings = 0
        self.answer_pings = True
        self.answer_config = True
        self.reading = True
        self._seq = 0
        self._master: int | None = None
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self._lock = threading.Lock()

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)  # the gateway opens it by path
        tmp = self.link_path.with_suffix(".new")
        tmp.unlink(missing_ok=True)
        tmp.symlink_to(name)
        os.replace(tmp, self.link_path)
        self._master = master
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        with self._lock:
            if self._master is not None:
                os.close(self._master)
                self._master = None
        self.link_path.unlink(missing_ok=True)

    def write_raw(self, data: bytes) -> None:
        with self._lock:
            assert self._master is not None
            os.write(self._master, data)

    def send(self, kind: int, payload: bytes = b"", seq: int | None = None) -> None:
        if seq is None:
            self._seq = (self._seq + 1) & 0xFF
            seq = self._seq
        self.write_raw(link.encode(kind, seq, payload))

    def rx(self, radio: bytes, rssi: int = -101, snr: float = 6.25) -> None:
        self.send(link.RX, link.rx_payload(radio, rssi, snr))

    def wait_tx(self, n: int, timeout: float = 10.0) -> list[bytes]:
        end = time.monotonic() + timeout
        while len(self.tx) < n and time.monotonic() < end:
            time.sleep(0.01)
        return list(self.tx)

    def _run(self) -> None:
        dec = link.Decoder()
        while not self._stop.is_set():
            fd = self._master
            if fd is None:
                return
            if not self.reading:
                time.sleep(0.02)
                continue
            r, _, _ = select.select([fd], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # gateway side not open yet / closed: keep waiting
                time.sleep(0.02)
                continue
            for msg in dec.feed(data):
                self.messages.append(msg)
                if msg.kind == link.PING:
                    self.pings += 1
                    if self.answer_pings:
                        self.send(link.PONG, msg.payload, msg.seq)
                elif msg.kind == link.STATUS:
                    self.send(link.STATUS, json.dumps(self.status).encode(), msg.seq)
                elif msg.kind == link.CONFIG:
                    change = json.loads(msg.payload)
                    self.configs.append(change)
                    if self.answer_config:
                        self.status = {**self.status, "radio": change}
                        self.send(link.STATUS, json.dumps(self.status).encode(), msg.seq)
                elif msg.kind == link.TX:
                    self.tx.append(msg.payload)
