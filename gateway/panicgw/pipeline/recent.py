"""The last frames the daemon judged, with their verdicts, for ``GET /v1/frames``.

Why it exists: rejected frames are never stored in SQLite (a flood of forgeries must not
fill the disk), so without this a technician sees only "bad_tag +3" and cannot tell which
button has the wrong key. A bounded ring (constant memory, default 2,000 entries) keeps
each judged frame with the device id it claims, peeked from the raw bytes even when the
frame failed its tag, replay or registry check. Entries are plain tuples built on the event
loop after the batch's downlinks are released, so recording never delays an ACK.

``seq`` increases by one per judged frame and restarts at 1 when the daemon restarts; a
client that sees ``next`` below the ``since`` it sent knows the daemon restarted.
"""

from __future__ import annotations

import struct
from collections import deque
from collections.abc import Iterable
from typing import Any

from panicgw.pipeline.frame import (
    COUNTER_EXHAUSTED,
    DUPLICATE,
    INTERNAL,
    PAYLOAD_ERROR,
    REJECTED,
    REPLAY,
    RESYNC,
    STORED,
    UNKNOWN_DEVICE,
    Frame,
    Outcome,
)
from panicproto import errors, frames

DEFAULT_SIZE = 2000
MAX_LIMIT = 2000

# Rejection reasons that belong to one judged frame (and so appear in the ring). Every other
# counted reason (http_*, link_*) is about a request or link message that never became a
# frame; monitors show those as counter deltas.
FRAME_REASONS = frozenset(
    (errors.SHORT, errors.LONG, errors.VERSION, errors.TYPE, errors.TAG, errors.FIELD,
     UNKNOWN_DEVICE, REPLAY, COUNTER_EXHAUSTED, INTERNAL, PAYLOAD_ERROR)
)

FIELDS = ("seq", "at", "path", "rssi", "snr", "device_id", "counter", "kind", "verdict",
          "reason", "incident_id", "attempt", "battery_mv")


def peek(data: bytes) -> tuple[int | None, int | None, str | None, int | None, int | None]:
    """(device id, counter, kind, attempt, battery mV) as far as the bytes allow.

    Unverified for rejected frames: it is what the frame claims, which is exactly what a
    technician needs to find the button with a bad key or a rolled-back counter.
    """
    device_id = counter = attempt = battery = None
    kind = None
    try:
        device_id = frames.peek_device_id(data)
    except errors.ProtocolError:
        return None, None, None, None, None
    if len(data) >= 9:
        counter = struct.unpack(">I", bytes(data[5:9]))[0]
    if data[0] >> 4 == frames.VERSION_1:
        kind = frames.TYPE_NAMES.get(data[0] & 0x0F)
    if len(data) >= 11 and kind is not None:
        attempt = data[9] & frames.ATTEMPT_MASK
        battery = data[10] * frames.BATTERY_STEP_MV
    return device_id, counter, kind, attempt, battery


class RecentFrames:
    """Ring buffer of judged frames. Written and read on the daemon's event loop only."""

    def __init__(self, size: int = DEFAULT_SIZE) -> None:
        if size < 1:
            raise ValueError("size must be at least 1")
        self.size = size
        self._ring: deque[tuple[Any, ...]] = deque(maxlen=size)
        self.seq = 0  # seq of the newest entry (0: nothing judged yet)

    def __len__(self) -> int:
        return len(self._ring)

    @property
    def oldest(self) -> int:
        """Seq of the oldest entry still held (``seq + 1`` when empty)."""
        return self._ring[0][0] if self._ring else self.seq + 1

    def record(self, batch: Iterable[Frame], outcomes: Iterable[Outcome]) -> None:
        """One entry per (frame, outcome) of a processed batch, in arrival order."""
        for f, out in zip(batch, outcomes, strict=True):
            self.add(f, out)

    def add(self, f: Frame, out: Outcome) -> None:
        device_id, counter, kind, attempt, battery = peek(f.data)
        if out.device_id is not None:
            device_id = out.device_id
        if out.status == STORED:
            verdict, reason = STORED, out.reason
        elif out.status == DUPLICATE:
            verdict, reason = DUPLICATE, out.reason
        else:  # REJECTED, and RESYNC (a replay answered with a signed resync)
            verdict, reason = REJECTED, out.reason or (REPLAY if out.status == RESYNC
                                                       else "rejected")
        if out.kind is not None:
            kind = out.kind
        self.seq += 1
        self._ring.append((self.seq, f.at, f.path, f.rssi, f.snr, device_id, counter, kind,
                           verdict, reason, out.incident_id, attempt, battery))

    def query(self, since: int = 0, device_id: int | None = None,
              limit: int = 500) -> dict[str, Any]:
        """Entries with seq > ``since`` (optionally one device's), oldest first.

        ``next`` is what to pass as ``since`` on the next call: the seq of the last entry
        returned when ``limit`` cut the answer short, else the newest seq examined (so a
        filtered follower does not rescan entries of other devices).
        """
        limit = max(0, min(limit, MAX_LIMIT))
        out: list[dict[str, Any]] = []
        nxt = max(since, 0) if since <= self.seq else self.seq
        if since < self.seq and limit > 0:
            # seqs are contiguous in the ring: jump straight to the first one after since
            start = max(0, since + 1 - self.oldest)
            for i in range(start, len(self._ring)):
                e = self._ring[i]
                nxt = e[0]
                if device_id is not None and e[5] != device_id:
                    continue
                out.append(dict(zip(FIELDS, e, strict=True)))
                if len(out) >= limit:
                    break
        return {"frames": out, "next": nxt, "oldest": self.oldest}
