"""Which gateways of the group are alive, and which one reports a device's silence.

Liveness comes from the retained ``status/<gw>`` (online, with a connection id) and
``gone/<gw>`` (the broker's last will, or said at shutdown, with the id of the connection it
ends): a gateway is live when its latest status is newer than its latest ``gone`` and not
older than ``stale_s`` (a hung daemon whose TCP connection lingers stops refreshing it).

**One decision per silence** (:func:`silence_owner`): among the live gateways that supervise
(their status says so: they hold the group's registry), the owner of a device is the one
with the highest rendezvous hash of (device, gateway). Only the owner reports the device's
supervision loss, and it judges silence on the union "last heard by any gateway"
(:meth:`panicgw.cluster.state.ReceptionState.last_heard`). Chosen over a retained claim
message ("first to claim reports") because it needs no message and no race rule: every
gateway computes the owner from the same membership; it spreads devices evenly; when the
owner dies its devices move to the next in hash order only (the others keep theirs) as soon
as its last will arrives (1.5 x keepalive), a delay that is nothing against supervision
limits of hours. If two gateways briefly disagree on membership both may report, and the
incident id (device, last counter, event, key generation) is the same from both, so dispatch
still keeps one. A gateway cut off from the broker knows no live peer and owns every device:
it supervises exactly as a lone gateway does today (never silent about a lost button because
the broker is down).
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from panicgw.cluster.messages import Gone, Status

DEFAULT_STALE_S = 60.0  # 6 missed status refreshes at the default 10 s


def _weight(device_id: int, gateway: str) -> bytes:
    return hashlib.blake2b(f"{device_id:08X}/{gateway}".encode(), digest_size=8).digest()


def silence_owner(device_id: int, candidates: Iterable[str]) -> str | None:
    """Rendezvous (highest random weight) hashing: the same owner for the same set,
    whatever order; removing a gateway moves only the devices it owned."""
    return max(candidates, key=lambda gw: (_weight(device_id, gw), gw), default=None)


@dataclass
class Member:
    gateway: str
    online_conn: int = 0
    status_at: float = 0.0  # our clock: when its latest status reached us
    gone_conn: int = 0
    gone_reason: str = ""
    supervise: bool = True
    info: dict[str, Any] = field(default_factory=dict)

    def live(self, now: float, stale_s: float) -> bool:
        return (self.online_conn > self.gone_conn and now - self.status_at <= stale_s)


class Membership:
    """The group as this gateway sees it. Thread-safe."""

    def __init__(self, gateway_id: str, *, stale_s: float = DEFAULT_STALE_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gateway_id = gateway_id
        self.stale_s = stale_s
        self.clock = clock
        self._m: dict[str, Member] = {}
        self._lock = threading.Lock()

    def status(self, s: Status) -> None:
        with self._lock:
            m = self._m.setdefault(s.gateway, Member(s.gateway))
            if s.conn >= m.online_conn:
                m.online_conn, m.status_at = s.conn, self.clock()
                m.supervise, m.info = s.supervise, dict(s.info)

    def gone(self, g: Gone) -> None:
        with self._lock:
            m = self._m.setdefault(g.gateway, Member(g.gateway))
            if g.conn >= m.gone_conn:
                m.gone_conn, m.gone_reason = g.conn, g.reason

    def live(self) -> set[str]:
        """Live peers (never ourselves)."""
        now = self.clock()
        with self._lock:
            return {gw for gw, m in self._m.items()
                    if gw != self.gateway_id and m.live(now, self.stale_s)}

    def supervisors(self, connected: bool) -> set[str]:
        """Who shares supervision: us plus the live peers that supervise; only us when we
        are cut off from the broker."""
        if not connected:
            return {self.gateway_id}
        now = self.clock()
        with self._lock:
            peers = {gw for gw, m in self._m.items() if gw != self.gateway_id
                     and m.supervise and m.live(now, self.stale_s)}
        return peers | {self.gateway_id}

    def owns_silence(self, device_id: int, connected: bool) -> bool:
        return silence_owner(device_id, self.supervisors(connected)) == self.gateway_id

    def snapshot(self) -> list[dict[str, Any]]:
        now = self.clock()
        with self._lock:
            return [{"gateway": gw, "live": m.live(now, self.stale_s),
                     "status_age_s": round(now - m.status_at, 1) if m.status_at else None,
                     "gone_reason": m.gone_reason if m.gone_conn >= m.online_conn else "",
                     "supervise": m.supervise, "info": dict(m.info)}
                    for gw, m in sorted(self._m.items())]
