"""The union of receptions (replay knowledge, heard-by-any, fleet) and who reports a
silence."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from panicgw.cluster import state as S
from panicgw.cluster.members import Membership, silence_owner
from panicgw.cluster.messages import Digest, Gone, Heard, RxReport, Status

DEV = 0x1234ABCD


class Clock:
    def __init__(self, t: float = 1_714_560_000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def rx(gw: str, counter: int, attempt: int = 0, *, at: float = 1_714_560_000.0,
       key_gen: int = 1, snr: float = 5.0, rssi: float = -90.0, **kw: object) -> RxReport:
    return RxReport(gw, DEV, key_gen, counter, attempt, "alarm", "lora", rssi, snr, at,
                    **kw)  # type: ignore[arg-type]


def test_copy_retry_replay_stale_and_new() -> None:
    clk = Clock()
    s = S.ReceptionState("gw-b", copy_window_s=30, recent_s=900, clock=clk)
    s.observe(rx("gw-a", 200, 0, incident="I-200"))
    # the same burst reached us a moment later: a copy, joins A's incident
    v = s.peer_verdict(DEV, 1, 200, 0, at=clk.t + 0.2)
    assert (v.verdict, v.incident, v.gateway) == (S.COPY, "I-200", "gw-a")
    # the button's retry (next attempt) that A did not hear: a new transmission
    assert s.peer_verdict(DEV, 1, 200, 1, at=clk.t + 4).verdict == S.RETRY
    # the very transmission A heard, played back here a minute later
    assert s.peer_verdict(DEV, 1, 200, 0, at=clk.t + 60).verdict == S.REPLAY
    # long after the details are gone, the peers' window still knows the counter
    clk.t += 1000
    s.prune()
    assert s.peer_verdict(DEV, 1, 200, 0).verdict == S.REPLAY
    assert s.peer_verdict(DEV, 1, 200, 3).verdict == S.REPLAY
    assert s.peer_verdict(DEV, 1, 201, 0).verdict == S.NEW
    assert s.peer_verdict(DEV, 1, 199, 0).verdict == S.NEW  # in the window, unseen
    v = s.peer_verdict(DEV, 1, 200 - 64, 0)
    assert v.verdict == S.STALE and v.highest == 200
    assert s.peer_verdict(0xFFFF, 1, 1, 0).verdict == S.NEW  # unknown device
    assert s.highest(DEV, 1) == 200


def test_own_receptions_never_make_a_peer_verdict() -> None:
    s = S.ReceptionState("gw-a", clock=Clock())
    s.observe(rx("gw-a", 5))
    assert s.peer_verdict(DEV, 1, 5, 0).verdict == S.NEW
    assert s.last_heard(DEV) == 1_714_560_000.0
    assert s.own_digest() == {DEV: Heard(1, 5, 1_714_560_000.0, -90.0, 5.0)}
    assert s.own_digest() is None  # unchanged since


def test_rekey_starts_afresh_and_old_generations_are_ignored() -> None:
    s = S.ReceptionState("gw-b", clock=Clock())
    s.observe(rx("gw-a", 900))
    s.observe(rx("gw-a", 3, key_gen=2))
    assert s.peer_verdict(DEV, 2, 4, 0).verdict == S.NEW
    assert s.highest(DEV, 2) == 3 and s.highest(DEV, 1) == -1
    s.observe(rx("gw-a", 901))  # a late report of the old key: no effect
    assert s.peer_verdict(DEV, 1, 901, 0).verdict == S.NEW
    assert s.highest(DEV, 2) == 3


def test_heard_by_any_is_never_in_the_future() -> None:
    clk = Clock()
    s = S.ReceptionState("gw-b", clock=clk)
    s.observe(rx("gw-a", 1, at=clk.t + 3600))  # a peer whose clock runs an hour ahead
    assert s.last_heard(DEV) == clk.t
    s.observe(rx("gw-b", 2, at=clk.t - 10))
    assert s.last_heard(DEV) == clk.t
    assert s.last_heard_all() == {DEV: clk.t}
    assert s.last_heard(0xFFFF) is None


def test_digest_catches_up_what_reports_missed() -> None:
    clk = Clock()
    s = S.ReceptionState("gw-b", clock=clk)
    s.merge_digest(Digest("gw-a", clk.t, {DEV: Heard(1, 77, clk.t - 5, -80.0, 9.0)}))
    assert s.last_heard(DEV) == clk.t - 5
    assert s.peer_verdict(DEV, 1, 77, 0).verdict == S.REPLAY
    assert s.peer_verdict(DEV, 1, 77 - 64, 0).verdict == S.STALE
    s.merge_digest(Digest("gw-b", clk.t, {DEV: Heard(1, 500, clk.t, None, None)}))  # own
    assert s.highest(DEV, 1) == 77


def test_fleet_names_the_best_gateway_per_device() -> None:
    clk = Clock()
    s = S.ReceptionState("gw-b", clock=clk)
    s.observe(rx("gw-a", 1, snr=2.0, rssi=-110.0))
    s.observe(rx("gw-b", 1, snr=8.0, rssi=-100.0))
    s.observe(rx("gw-c", 1, snr=8.0, rssi=-95.0))
    f = s.fleet()["1234ABCD"]
    assert f["best"] == "gw-c" and set(f["heard_by"]) == {"gw-a", "gw-b", "gw-c"}
    assert f["heard_by"]["gw-a"]["rssi"] == -110.0


def test_membership_from_status_and_last_will() -> None:
    clk = Clock(0.0)
    m = Membership("gw-a", stale_s=30, clock=clk)
    m.status(Status("gw-b", 10, 0.0))
    m.status(Status("gw-c", 20, 0.0, supervise=False))
    m.status(Status("gw-a", 5, 0.0))  # our own: never a peer
    assert m.live() == {"gw-b", "gw-c"}
    assert m.supervisors(connected=True) == {"gw-a", "gw-b"}
    assert m.supervisors(connected=False) == {"gw-a"}  # cut off: supervise everything
    m.gone(Gone("gw-b", 10, "connection lost"))
    assert m.live() == {"gw-c"}
    m.status(Status("gw-b", 11, 0.0))  # back, on a new connection
    m.gone(Gone("gw-b", 10, "connection lost"))  # the old will again: changes nothing
    assert m.live() == {"gw-b", "gw-c"}
    clk.t = 31.0  # no refresh for too long: a hung peer
    assert m.live() == set()
    snap = {x["gateway"]: x for x in m.snapshot()}
    assert not snap["gw-b"]["live"] and snap["gw-c"]["supervise"] is False


def test_one_owner_per_device_and_nobody_else_reports() -> None:
    gws = {"gw-a", "gw-b", "gw-c"}
    owners = {}
    for me in gws:
        m = Membership(me, clock=Clock(0.0))
        for other in gws - {me}:
            m.status(Status(other, 1, 0.0))
        owners[me] = [d for d in range(500) if m.owns_silence(d, connected=True)]
    assert sorted(sum(owners.values(), [])) == list(range(500))  # each device exactly once
    assert all(100 < len(v) < 250 for v in owners.values())  # spread over the gateways


names = st.lists(st.sampled_from([f"gw-{i}" for i in range(12)]), min_size=1, max_size=8,
                 unique=True)


@given(st.integers(0, 0xFFFFFFFF), names, st.randoms(use_true_random=False))
def test_owner_is_order_free_and_moves_only_when_it_leaves(dev: int, gws: list[str],
                                                           rnd: object) -> None:
    owner = silence_owner(dev, gws)
    shuffled = list(gws)
    rnd.shuffle(shuffled)  # type: ignore[attr-defined]
    assert silence_owner(dev, shuffled) == owner and owner in gws
    for g in gws:
        if g != owner:  # a non-owner leaving never moves the device
            assert silence_owner(dev, [x for x in gws if x != g]) == owner
