"""One downlink per uplink: the election's rules, its timing budget, and its properties."""

from __future__ import annotations

import asyncio

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicbutton.settings import Settings
from panicgw.cluster import election as el
from panicgw.cluster.election import (
    AsyncElector,
    Candidate,
    Election,
    budget_ms,
    rank,
    winner,
)
from panicgw.cluster.messages import UplinkKey
from panicproto import airtime, frames

KEY = UplinkKey(0x1234ABCD, 1, 42, 0)


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_best_snr_then_rssi_then_gateway_id() -> None:
    a, b, c = Candidate("gw-a", 5.0, -100.0), Candidate("gw-b", 7.5, -110.0), \
        Candidate("gw-c", 7.5, -90.0)
    assert winner([a, b, c]).gateway == "gw-c"  # SNR tie: better RSSI
    assert winner([Candidate("gw-b", 1.0, -90.0), Candidate("gw-a", 1.0, -90.0)]).gateway \
        == "gw-a"  # full tie: lowest id
    assert winner([Candidate("gw-a", None, -50.0), Candidate("gw-b", -19.0, None)]).gateway \
        == "gw-b"  # a missing SNR ranks last


def test_window_fits_the_buttons_receive_window_with_the_sf10_ack() -> None:
    assert Settings().rx_window_ms == el.BUTTON_RX_WINDOW_MS
    sf10 = airtime.time_on_air_ms(frames.DOWNLINK_LEN, 10)
    assert 300 < sf10 < 340
    assert 0.25 <= el.DEFAULT_COLLECT_S <= 0.4
    left = budget_ms()
    assert left == pytest.approx(3000 - 300 - el.LOCAL_OVERHEAD_MS - sf10)
    assert left > 2000  # 2 s to spare for a 4G hiccup
    assert budget_ms(sf=12) > 1000  # even the slowest SF fits
    # and the window itself covers a 100 ms broker round trip plus skew and jitter
    assert el.DEFAULT_COLLECT_S * 1000 >= 100 + 100 + 100


def test_alone_best_outranked_claimed_and_isolated() -> None:
    clk = Clock()
    e = Election("gw-a", 0.3, clk)
    e.open(KEY, Candidate("gw-a", 5.0, -90.0))
    clk.t += 0.3
    d = e.decide(KEY)
    assert d.transmit and d.reason == el.ALONE and d.winner == "gw-a"
    assert e.decide(KEY) is d  # asked again: the same answer

    k2 = KEY._replace(attempt=1)  # a retry is another transmission, another ballot
    e.observe(k2, Candidate("gw-b", 9.0, -80.0))  # the peer's report came first
    e.open(k2, Candidate("gw-a", 5.0, -90.0))
    d = e.decide(k2)
    assert not d.transmit and d.reason == el.OUTRANKED and d.winner == "gw-b"

    k3 = KEY._replace(counter=43)
    e.open(k3, Candidate("gw-a", 9.0, -80.0))
    e.observe(k3, Candidate("gw-b", 1.0, -120.0))
    assert e.decide(k3).reason == el.BEST

    k4 = KEY._replace(counter=44)
    e.open(k4, Candidate("gw-a", 9.0, -80.0))
    e.observe_claim(k4, "gw-c")  # a peer already transmits: never a second ACK
    d = e.decide(k4)
    assert not d.transmit and d.reason == el.CLAIMED and d.winner == "gw-c"

    k5 = KEY._replace(counter=45)
    e.open(k5, Candidate("gw-a", 1.0, -120.0))
    e.observe(k5, Candidate("gw-b", 9.0, -80.0))
    assert e.decide(k5, isolated=True).transmit  # no broker: as a lone gateway
    assert e.stats == {el.ALONE: 1, el.BEST: 1, el.OUTRANKED: 1, el.CLAIMED: 1,
                       el.ISOLATED: 1}
    clk.t += 100
    assert e.prune() == 5 and len(e) == 0


def test_complete_when_every_live_peer_reported() -> None:
    e = Election("gw-a", 0.3, Clock())
    e.open(KEY, Candidate("gw-a", 1.0, -100.0))
    assert not e.complete(KEY, {"gw-b", "gw-c"})
    e.observe(KEY, Candidate("gw-b", 2.0, -100.0))
    assert not e.complete(KEY, {"gw-b", "gw-c"})
    e.observe(KEY, Candidate("gw-c", 0.0, -100.0))
    assert e.complete(KEY, {"gw-b", "gw-c"})
    assert not e.complete(KEY, set())  # no peers known: wait the window out


def test_async_elector_waits_the_window_or_less() -> None:
    async def main() -> None:
        live: set[str] = set()
        x = AsyncElector("gw-a", 0.2, live_peers=lambda: live)
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        d = await x.run(KEY, Candidate("gw-a", 1.0, -100.0))
        assert d.reason == el.ALONE and loop.time() - t0 >= 0.19
        live.add("gw-b")
        k = KEY._replace(counter=2)
        loop.call_later(0.05, x.observe, k, Candidate("gw-b", 3.0, -100.0))
        t0 = loop.time()
        d = await x.run(k, Candidate("gw-a", 1.0, -100.0))
        assert d.winner == "gw-b" and loop.time() - t0 < 0.15  # all in: decided early
        t0 = loop.time()
        d = await x.run(KEY._replace(counter=3), Candidate("gw-a", 1.0, -100.0),
                        isolated=True)
        assert d.reason == el.ISOLATED and loop.time() - t0 < 0.05

    asyncio.run(main())


cands = st.lists(
    st.builds(Candidate,
              st.sampled_from([f"gw-{c}" for c in "abcdefgh"]),
              st.one_of(st.none(), st.floats(-20, 15).map(lambda x: round(x, 2)),
                        st.sampled_from([5.0, 7.25])),
              st.one_of(st.none(), st.floats(-140, -30).map(lambda x: round(x, 2)),
                        st.sampled_from([-90.0]))),
    min_size=1, max_size=8, unique_by=lambda c: c.gateway)


@given(cands, st.randoms(use_true_random=False))
def test_same_reports_same_winner_in_any_order(cs: list[Candidate], rnd: object) -> None:
    shuffled = list(cs)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert winner(cs) == winner(shuffled)
    assert winner(cs) in cs
    assert all(rank(winner(cs)) <= rank(c) for c in cs)


@given(cands, st.data())
def test_every_gateway_agrees_when_all_reports_arrive(cs: list[Candidate],
                                                      data: st.DataObject) -> None:
    decisions = []
    for me in cs:
        e = Election(me.gateway, 0.3, Clock())
        order = data.draw(st.permutations([c for c in cs if c is not me]))
        before = data.draw(st.integers(0, len(order)))  # some arrive before our own
        for c in order[:before]:
            e.observe(KEY, c)
        e.open(KEY, me)
        for c in order[before:]:
            e.observe(KEY, c)
        decisions.append(e.decide(KEY))
    assert len({d.winner for d in decisions}) == 1
    assert sum(d.transmit for d in decisions) == 1
    assert decisions[0].winner == winner(cs).gateway


@given(cands, st.data())
def test_at_least_one_transmits_whatever_arrives_late(cs: list[Candidate],
                                                      data: st.DataObject) -> None:
    """Reports lost or late: never zero ACKs (the best of all always transmits)."""
    transmits = []
    for me in cs:
        e = Election(me.gateway, 0.3, Clock())
        e.open(KEY, me)
        for c in cs:
            if c is not me and data.draw(st.booleans()):
                e.observe(KEY, c)
        transmits.append(e.decide(KEY).transmit)
    assert any(transmits)
    best = winner(cs)
    assert transmits[cs.index(best)]
