"""The union of what the group heard: replay knowledge, "heard by anyone", the fleet view.

Fed with every reception report and digest (own and peers'), it answers three questions:

1. **Did a peer already hear this frame?** (:meth:`ReceptionState.peer_verdict`) Per device
   and key generation it keeps the peers' replay window (highest counter plus a bitmap, as
   :class:`panicproto.replay.ReplayWindow`; two integers a device) and, for
   ``recent_s``, which (counter, attempt) each peer heard, when the report reached us (our
   clock) and its incident. So for a frame the local window calls new:

   - ``COPY``: a peer heard this very transmission (same counter and attempt) at most
     ``copy_window_s`` before we got it: the same radio burst reached two gateways. Store it
     and name the peer's incident (dispatch gets one incident id from both).
   - ``RETRY``: a peer heard this counter, not this attempt: the button retries (its ACK was
     lost). A legitimate new transmission: store, peer's incident.
   - ``REPLAY``: the same transmission, heard by a peer longer ago than ``copy_window_s``,
     or a counter the peers' window holds whose details are gone: someone recorded it and
     plays it back here. Never forward; count ``replay`` (phase 2 wiring re-ACKs it like a
     local duplicate, which can only help a button still waiting for that ACK).
   - ``STALE``: older than the peers' window: answer with a RESYNC above ``highest``.
   - ``NEW``: no peer knows it; the local rules decide.

   The window is measured on our own clock (report receipt to frame), so gateways' clocks
   need not agree; ``copy_window_s`` (30 s) covers a broker round trip with a generous
   margin, and a play-back inside it is harmless (the same incident id, which dispatch
   de-duplicates). A rekey restarts the counter: state is per key generation, and older
   generations are dropped when a newer one is heard.

2. **When was a device last heard by anyone?** (:meth:`last_heard`) the latest of every
   gateway's reports, each taken as the earlier of the reported time and our receipt time,
   so a peer with a clock running ahead cannot hide a silence.

3. **Who hears what?** (:meth:`fleet`) per device and gateway the last RSSI/SNR/time, and
   the best gateway per device, for the fleet view.

Thread-safe (one lock): the MQTT thread feeds it, the pipeline and supervision threads ask.
The one-decision-per-silence rule is :func:`silence_owner` in :mod:`panicgw.cluster.members`.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from panicgw.cluster.messages import Digest, Heard, RxReport, dev_hex
from panicproto import replay

NEW = "new"
COPY = "copy"
RETRY = "retry"
REPLAY = "replay"
STALE = "stale"

DEFAULT_COPY_WINDOW_S = 30.0
DEFAULT_RECENT_S = 900.0  # alarms ask again (same counter) for 10 minutes after STORED
MAX_RECENT = 64  # (counter, attempt) entries a device keeps


@dataclass(frozen=True)
class PeerVerdict:
    verdict: str  # NEW | COPY | RETRY | REPLAY | STALE
    incident: str | None = None  # the peer's incident for COPY/RETRY
    gateway: str | None = None  # the peer that heard it
    highest: int = -1  # the peers' highest counter (for a RESYNC on STALE)


@dataclass
class _Recent:
    received: float  # our clock, when the report reached us
    gateway: str
    incident: str | None


class _Device:
    __slots__ = ("key_gen", "window", "recent", "heard")

    def __init__(self, key_gen: int, size: int) -> None:
        self.key_gen = key_gen
        self.window = replay.ReplayWindow(size)
        self.recent: OrderedDict[tuple[int, int], _Recent] = OrderedDict()
        self.heard: dict[str, Heard] = {}  # per gateway (own included), any generation


class ReceptionState:
    def __init__(self, gateway_id: str, *, window_size: int = 64,
                 copy_window_s: float = DEFAULT_COPY_WINDOW_S,
                 recent_s: float = DEFAULT_RECENT_S, max_recent: int = MAX_RECENT,
                 clock: Callable[[], float] = time.time) -> None:
        self.gateway_id = gateway_id
        self.window_size = window_size
        self.copy_window_s = copy_window_s
        self.recent_s = recent_s
        self.max_recent = max_recent
        self.clock = clock
        self._devices: dict[int, _Device] = {}
        self._own_changed = False
        self._lock = threading.Lock()

    # -- feeding -------------------------------------------------------------------------

    def _device(self, device_id: int, key_gen: int) -> _Device | None:
        """The device's state for ``key_gen``: a newer generation starts afresh, an older
        one is ignored (its frames are no use to anyone after a rekey)."""
        d = self._devices.get(device_id)
        if d is None or key_gen > d.key_gen:
            fresh = _Device(key_gen, self.window_size)
            if d is not None:
                fresh.heard = d.heard
            self._devices[device_id] = d = fresh
        return d if key_gen == d.key_gen else None

    def _heard(self, d: _Device, gateway: str, h: Heard) -> None:
        old = d.heard.get(gateway)
        if old is None or (h.key_gen, h.at) >= (old.key_gen, old.at):
            d.heard[gateway] = h

    def observe(self, r: RxReport, received: float | None = None) -> None:
        """A reception report, ours or a peer's."""
        now = self.clock() if received is None else received
        with self._lock:
            d = self._device(r.device_id, r.key_gen)
            if d is None:
                return
            own = r.gateway == self.gateway_id
            if own:
                self._own_changed = True
            at = r.at if own else min(r.at, now)
            prev = d.heard.get(r.gateway)
            highest = max(r.counter, prev.highest if prev and prev.key_gen == r.key_gen
                          else -1)
            self._heard(d, r.gateway, Heard(r.key_gen, highest, at, r.rssi, r.snr))
            if own:
                return
            d.window.accept(r.counter)
            k = (r.counter, r.attempt)
            if k not in d.recent:
                d.recent[k] = _Recent(now, r.gateway, r.incident)
                while len(d.recent) > self.max_recent:
                    d.recent.popitem(last=False)

    def merge_digest(self, dg: Digest, received: float | None = None) -> None:
        """A peer's digest: its highest counter and last time per device (after an outage,
        the reports it sent while we were away may never reach us; this does)."""
        if dg.gateway == self.gateway_id:
            return
        now = self.clock() if received is None else received
        with self._lock:
            for device_id, h in dg.devices.items():
                d = self._device(device_id, h.key_gen)
                if d is None:
                    continue
                d.window.accept(h.highest)
                self._heard(d, dg.gateway, Heard(h.key_gen, h.highest, min(h.at, now),
                                                 h.rssi, h.snr))

    # -- questions -----------------------------------------------------------------------

    def peer_verdict(self, device_id: int, key_gen: int, counter: int, attempt: int,
                     at: float | None = None) -> PeerVerdict:
        """What the peers know of this frame (``at``: when we received it, our clock)."""
        now = self.clock() if at is None else at
        with self._lock:
            d = self._devices.get(device_id)
            if d is None or d.key_gen != key_gen:
                return PeerVerdict(NEW)
            hi = d.window.highest
            same = d.recent.get((counter, attempt))
            if same is not None and now - same.received <= self.recent_s:
                v = COPY if now - same.received <= self.copy_window_s else REPLAY
                return PeerVerdict(v, same.incident, same.gateway, hi)
            other = next((r for (c, _), r in reversed(d.recent.items())
                          if c == counter and now - r.received <= self.recent_s), None)
            if other is not None:
                return PeerVerdict(RETRY, other.incident, other.gateway, hi)
            w = d.window.check(counter)
            if w == replay.STALE:
                return PeerVerdict(STALE, highest=hi)
            if w == replay.DUPLICATE:
                return PeerVerdict(REPLAY, highest=hi)
            return PeerVerdict(NEW, highest=hi)

    def last_heard(self, device_id: int) -> float | None:
        """When anyone (us included) last heard the device, or None."""
        with self._lock:
            d = self._devices.get(device_id)
            if d is None or not d.heard:
                return None
            return max(h.at for h in d.heard.values())

    def last_heard_all(self) -> dict[int, float]:
        with self._lock:
            return {i: max(h.at for h in d.heard.values())
                    for i, d in self._devices.items() if d.heard}

    def highest(self, device_id: int, key_gen: int) -> int:
        """The peers' highest counter of this generation (-1: none)."""
        with self._lock:
            d = self._devices.get(device_id)
            return d.window.highest if d is not None and d.key_gen == key_gen else -1

    def own_digest(self, force: bool = False) -> dict[int, Heard] | None:
        """What we ourselves heard, when it changed since the last call (else None;
        ``force``: in any case)."""
        with self._lock:
            if not self._own_changed and not force:
                return None
            self._own_changed = False
            return {i: d.heard[self.gateway_id] for i, d in self._devices.items()
                    if self.gateway_id in d.heard}

    def fleet(self) -> dict[str, Any]:
        """Per device: who heard it, with what, and the best gateway (by SNR, then RSSI,
        over the last hour of what each heard; else the most recent)."""
        with self._lock:
            out: dict[str, Any] = {}
            for i, d in sorted(self._devices.items()):
                heard = {gw: {"at": h.at, "rssi": h.rssi, "snr": h.snr, "counter": h.highest,
                              "key_gen": h.key_gen} for gw, h in sorted(d.heard.items())}
                latest = max((h.at for h in d.heard.values()), default=0.0)
                fresh = [(gw, h) for gw, h in d.heard.items() if latest - h.at <= 3600]
                best = min(fresh, key=lambda gh: (
                    -(gh[1].snr if gh[1].snr is not None else -1e9),
                    -(gh[1].rssi if gh[1].rssi is not None else -1e9), gh[0]),
                    default=(None, None))[0]
                out[dev_hex(i)] = {"key_gen": d.key_gen, "highest": d.window.highest,
                                   "last_heard": latest or None, "best": best,
                                   "heard_by": heard}
            return out

    def prune(self, now: float | None = None) -> None:
        """Forget (counter, attempt) details older than ``recent_s``."""
        now = self.clock() if now is None else now
        with self._lock:
            for d in self._devices.values():
                while d.recent:
                    k, r = next(iter(d.recent.items()))
                    if now - r.received <= self.recent_s:
                        break
                    del d.recent[k]
