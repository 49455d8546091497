"""What goes into the pipeline (a received copy of a frame) and what comes out (its verdict).

Every stage speaks these types, and so do the ingests (HTTP, serial), the daemon and the
recent-frames ring: they are the pipeline's whole interface.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from panicgw.store import PRIO_OTHER, OutboxItem
from panicproto import frames

# Verdicts.
STORED = "stored"
DUPLICATE = "duplicate"
RESYNC = "resync"
REJECTED = "rejected"

# Rejection reasons beyond the protocol's own (panicproto.errors.REASONS).
UNKNOWN_DEVICE = "unknown_device"
REPLAY = "replay"
COUNTER_EXHAUSTED = "counter_exhausted"  # stale, verified, and no epoch left to RESYNC to
INTERNAL = "internal_error"
PAYLOAD_ERROR = "payload_error"  # the dispatch payload builder failed (event still stored)


@dataclass
class Frame:
    """One received copy of a radio frame, with where and how it was heard."""

    data: bytes
    path: str  # "lora" | "wifi"
    rssi: float | None = None
    snr: float | None = None
    at: float | None = None  # wall-clock receive time; filled in by the pipeline if None
    source: str = ""  # client address or serial port, for logs


@dataclass
class Outcome:
    status: str  # STORED | DUPLICATE | RESYNC | REJECTED
    reason: str | None = None
    downlink: bytes | None = None
    device_id: int | None = None
    counter: int | None = None
    kind: str | None = None
    incident_id: str | None = None
    priority: int = PRIO_OTHER
    event: dict[str, Any] | None = None  # for MQTT, set when stored
    outbox: OutboxItem | None = None  # the dispatch message committed with it (fast lane)
    ack_status: int = frames.STORED  # DELIVERED on a re-ACK once dispatch confirmed it
