"""Enough of the bridge link protocol (``panicproto.link``) to PING the bridge and ask its
STATUS while the daemon is stopped.

Diag's own, not the ingest's: the daemon's serial ingest is a supervised reader and writer
pair that owns the port for the daemon's lifetime and feeds the pipeline; diag needs one
request and its reply, on a port it opens exclusively and closes at once.
"""

from __future__ import annotations

import secrets
import time
from typing import Any


class LinkClient:
    """Request/reply over the bridge's data port (``exclusive``: never a port in use)."""

    def __init__(self, port: str, baudrate: int, timeout: float) -> None:
        import serial

        from panicproto import link

        self.timeout = timeout
        self.ser = serial.Serial(port, baudrate, timeout=0.05, exclusive=True)
        self.link = link
        self.decoder = link.Decoder()
        self.logs: list[str] = []
        self.seq = secrets.randbelow(256)

    def close(self) -> None:
        self.ser.close()

    def request(self, kind: int, payload: bytes, want: int) -> Any:
        """Send one message; the reply of type ``want`` with our seq, or None on timeout."""
        self.seq = (self.seq + 1) & 0xFF
        seq = self.seq
        self.ser.write(self.link.encode(kind, seq, payload))
        self.ser.flush()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self.ser.read(256)
            for msg in self.decoder.feed(data):
                if msg.kind == self.link.LOG:
                    self.logs.append(msg.payload.decode("utf-8", "replace")[:200])
                elif msg.kind == want and msg.seq == seq:
                    if want == self.link.PONG and msg.payload != payload:
                        continue
                    return msg
        return None
