"""One LoRa downlink per uplink: which of the gateways that heard a frame transmits its ACK.

Every gateway that verified a frame and has a LoRa downlink for it publishes its reception
report (:class:`~panicgw.cluster.messages.RxReport` with ``downlink`` set) and collects the
others' for ``collect_s``. Then each decides on its own, with no further round trip: it
transmits when its own report ranks first among those it has (best SNR, then best RSSI, then
the lowest gateway id as a stable tiebreak: :func:`rank`), and when no other gateway has
already claimed the uplink. The winner publishes a :class:`~panicgw.cluster.messages.Claim`.

Why this is safe without a coordinator (ChirpStack, by contrast, has one network server
collect all copies in Redis under a lock and pick the gateway; our gateways must work with no
server at all):

- same reports in, same winner out: :func:`winner` is a pure total order;
- **at least one transmits**: the best gateway of all that heard the frame sees no better
  report than its own, so it always transmits (unless a claim reached it first, and a claim
  is only sent by one that transmits);
- **usually exactly one**: two transmit only when a better report arrived too late for
  someone's window, i.e. what every gateway does today;
- a gateway that hears no peer within the window transmits (``alone``), and one whose broker
  link is down decides at once (``isolated``), without waiting: exactly today's behaviour.

The collect window: :data:`DEFAULT_COLLECT_S` = 0.3 s. A peer's report reaches us one broker
round trip after the peer verified the frame (100 ms on 4G links: ~50 ms up, ~50 ms down),
and the gateways verify the same transmission up to ~100 ms apart (serial link, batch
commit under load), plus ~100 ms for 4G jitter. The button listens ``PB_RX_WINDOW_MS`` =
3,000 ms after its uplink; the ACK must be on air and complete inside it:
collect 300 ms + serial and commit ~150 ms + the SF10 downlink's time on air
(``panicproto.airtime.time_on_air_ms(18, 10)`` = 330 ms) = ~780 ms, which leaves ~2.2 s
(and even SF12's 1,319 ms fits: ~1.8 s in all). :func:`budget_ms` computes it; a test
keeps it honest. When reports from every live peer are in, the decision is taken at once
(``complete``): the window is a bound, not a delay.

:class:`Election` is pure logic with an injectable clock; :class:`AsyncElector` runs it on
an asyncio loop (reports and claims arrive from the MQTT thread via ``call_soon_threadsafe``).
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from panicgw.cluster.messages import UplinkKey
from panicproto import airtime, frames

DEFAULT_COLLECT_S = 0.3
BUTTON_RX_WINDOW_MS = 3000  # PB_RX_WINDOW_MS's default (panicbutton.settings)
LOCAL_OVERHEAD_MS = 150  # serial in and out, batch commit, bridge TX turnaround
KEEP_S = 30.0  # how long a report without a ballot of ours (yet) is kept

# Decision reasons
ALONE = "alone"  # no peer reported within the window
BEST = "best"  # own report ranks first
OUTRANKED = "outranked"  # a peer ranks first: it transmits
CLAIMED = "claimed"  # a peer already claimed the uplink
ISOLATED = "isolated"  # no broker: decided at once, as a lone gateway


def budget_ms(collect_s: float = DEFAULT_COLLECT_S, sf: int = 10,
              rx_window_ms: int = BUTTON_RX_WINDOW_MS) -> float:
    """What is left of the button's receive window once the ACK has been sent at ``sf``."""
    on_air = airtime.time_on_air_ms(frames.DOWNLINK_LEN, sf)
    return rx_window_ms - collect_s * 1000.0 - LOCAL_OVERHEAD_MS - on_air


@dataclass(frozen=True)
class Candidate:
    gateway: str
    snr: float | None
    rssi: float | None


def rank(c: Candidate) -> tuple[float, float, str]:
    """Sort key, lowest first: best SNR, then best RSSI (missing counts as worst), then id."""
    snr = c.snr if c.snr is not None and math.isfinite(c.snr) else -math.inf
    rssi = c.rssi if c.rssi is not None and math.isfinite(c.rssi) else -math.inf
    return (-snr, -rssi, c.gateway)


def winner(candidates: Iterable[Candidate]) -> Candidate:
    """The one to transmit; the same for any order of the same candidates."""
    return min(candidates, key=rank)


@dataclass(frozen=True)
class Decision:
    transmit: bool
    winner: str
    reason: str
    candidates: tuple[Candidate, ...]
    waited_s: float


@dataclass
class _Ballot:
    own: Candidate | None = None
    opened: float = 0.0
    deadline: float = 0.0
    peers: dict[str, Candidate] = field(default_factory=dict)
    claims: set[str] = field(default_factory=set)
    seen: float = 0.0  # last time anything arrived (for pruning)
    decided: Decision | None = None


class Election:
    """The ballots of one gateway. Not thread-safe: one owner (the elector's loop)."""

    def __init__(self, gateway_id: str, collect_s: float = DEFAULT_COLLECT_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.gateway_id = gateway_id
        self.collect_s = collect_s
        self.clock = clock
        self._ballots: dict[UplinkKey, _Ballot] = {}
        self.stats = {ALONE: 0, BEST: 0, OUTRANKED: 0, CLAIMED: 0, ISOLATED: 0}

    def open(self, key: UplinkKey, own: Candidate, now: float | None = None) -> float:
        """Start collecting for ``key`` with our own candidate; returns the deadline."""
        now = self.clock() if now is None else now
        b = self._ballots.setdefault(key, _Ballot())
        if b.own is None:
            b.own, b.opened, b.deadline = own, now, now + self.collect_s
        b.seen = now
        return b.deadline

    def observe(self, key: UplinkKey, cand: Candidate, now: float | None = None) -> None:
        """A peer's report (before or after our own)."""
        if cand.gateway == self.gateway_id:
            return
        b = self._ballots.setdefault(key, _Ballot())
        b.peers.setdefault(cand.gateway, cand)
        b.seen = self.clock() if now is None else now

    def observe_claim(self, key: UplinkKey, gateway: str, now: float | None = None) -> None:
        if gateway == self.gateway_id:
            return
        b = self._ballots.setdefault(key, _Ballot())
        b.claims.add(gateway)
        b.seen = self.clock() if now is None else now

    def complete(self, key: UplinkKey, live_peers: Iterable[str]) -> bool:
        """Every live peer has reported (or claimed): waiting longer cannot change a thing."""
        b = self._ballots.get(key)
        if b is None or b.own is None:
            return False
        if b.claims:
            return True
        peers = set(live_peers) - {self.gateway_id}
        return bool(peers) and peers <= set(b.peers)

    def decide(self, key: UplinkKey, now: float | None = None, *, isolated: bool = False
               ) -> Decision:
        """The decision for ``key`` (the same one if asked again)."""
        now = self.clock() if now is None else now
        b = self._ballots.get(key)
        if b is None or b.own is None:
            raise KeyError(f"no ballot of ours for {key}")
        if b.decided is not None:
            return b.decided
        cands = (b.own, *sorted(b.peers.values(), key=rank))
        if isolated:
            d = Decision(True, b.own.gateway, ISOLATED, (b.own,), now - b.opened)
        elif b.claims:
            d = Decision(False, min(b.claims), CLAIMED, cands, now - b.opened)
        else:
            best = winner(cands)
            mine = best.gateway == self.gateway_id
            reason = ALONE if not b.peers else BEST if mine else OUTRANKED
            d = Decision(mine, best.gateway, reason, cands, now - b.opened)
        b.decided = d
        self.stats[d.reason] += 1
        return d

    def claims(self, key: UplinkKey) -> set[str]:
        """The peers that claimed ``key`` so far."""
        b = self._ballots.get(key)
        return set(b.claims) if b is not None else set()

    def deadline(self, key: UplinkKey) -> float | None:
        b = self._ballots.get(key)
        return None if b is None or b.own is None else b.deadline

    def prune(self, now: float | None = None, keep_s: float = KEEP_S) -> int:
        """Forget ballots idle for ``keep_s``; returns how many."""
        now = self.clock() if now is None else now
        old = [k for k, b in self._ballots.items()
               if now - max(b.seen, b.deadline) > keep_s]
        for k in old:
            del self._ballots[k]
        return len(old)

    def __len__(self) -> int:
        return len(self._ballots)


class AsyncElector:
    """:class:`Election` on an asyncio loop: ``await run(key, own)`` returns the decision
    after the window (or sooner, once complete). ``observe``/``observe_claim`` may be called
    from any thread."""

    def __init__(self, gateway_id: str, collect_s: float = DEFAULT_COLLECT_S, *,
                 live_peers: Callable[[], Iterable[str]] = tuple,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.election = Election(gateway_id, collect_s, clock)
        self.live_peers = live_peers
        self._loop: asyncio.AbstractEventLoop | None = None
        self._wake: dict[UplinkKey, asyncio.Event] = {}

    def attach(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop

    def observe(self, key: UplinkKey, cand: Candidate) -> None:
        self._call(self._observe, key, cand)

    def observe_claim(self, key: UplinkKey, gateway: str) -> None:
        self._call(self._observe_claim, key, gateway)

    def _call(self, fn: Callable[..., None], *args: object) -> None:
        loop = self._loop
        if loop is None or loop.is_closed():
            return
        try:
            running = asyncio.get_running_loop()
        except RuntimeError:
            running = None
        if running is loop:
            fn(*args)
        else:
            loop.call_soon_threadsafe(fn, *args)

    def prune(self) -> None:
        """Forget old ballots (from any thread): peers' reports of frames we never heard
        open ballots too, and a gateway that seldom elects must still drop them."""
        self._call(self.election.prune)

    def _observe(self, key: UplinkKey, cand: Candidate) -> None:
        self.election.observe(key, cand)
        self._poke(key)

    def _observe_claim(self, key: UplinkKey, gateway: str) -> None:
        self.election.observe_claim(key, gateway)
        self._poke(key)

    def _poke(self, key: UplinkKey) -> None:
        ev = self._wake.get(key)
        if ev is not None and self.election.complete(key, self.live_peers()):
            ev.set()

    async def run(self, key: UplinkKey, own: Candidate, *, isolated: bool = False) -> Decision:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        el = self.election
        deadline = el.open(key, own)
        if not isolated and not el.complete(key, self.live_peers()):
            ev = self._wake.setdefault(key, asyncio.Event())
            try:
                left = deadline - el.clock()
                if left > 0:
                    await asyncio.wait_for(ev.wait(), left)
            except TimeoutError:
                pass
            finally:
                self._wake.pop(key, None)
        decision = el.decide(key, isolated=isolated)
        el.prune()
        return decision
