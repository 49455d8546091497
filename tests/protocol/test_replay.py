"""The anti-replay window against a trivially correct model."""

from hypothesis import given
from hypothesis import strategies as st

from panicproto import replay


class Model:
    def __init__(self, size: int) -> None:
        self.size, self.seen = size, set()

    def check(self, c: int) -> str:
        if not self.seen or c > max(self.seen):
            return replay.NEW
        if max(self.seen) - c >= self.size:
            return replay.STALE
        return replay.DUPLICATE if c in self.seen else replay.NEW

    def accept(self, c: int) -> str:
        v = self.check(c)
        if v == replay.NEW:
            self.seen.add(c)
        return v


@given(st.sampled_from([1, 8, 64]), st.lists(st.integers(0, 300), max_size=200))
def test_window_matches_model(size: int, counters: list[int]) -> None:
    w, m = replay.ReplayWindow(size), Model(size)
    for c in counters:
        assert w.check(c) == m.check(c)
        assert w.accept(c) == m.accept(c)


@given(st.lists(st.integers(0, 0xFFFFFFFF), max_size=50))
def test_state_round_trip(counters: list[int]) -> None:
    w = replay.ReplayWindow(64)
    for c in counters:
        w.accept(c)
    restored = replay.ReplayWindow(64, *w.state())
    for c in counters + [0, 0xFFFFFFFF]:
        assert restored.check(c) == w.check(c)
    assert w.bitmap < 1 << 64


def test_out_of_order_copies_are_accepted_once() -> None:
    w = replay.ReplayWindow(64)
    assert [w.accept(c) for c in (10, 8, 9, 8, 10, 11)] == [
        replay.NEW, replay.NEW, replay.NEW, replay.DUPLICATE, replay.DUPLICATE, replay.NEW]


def test_check_does_not_mutate() -> None:
    w = replay.ReplayWindow(64)
    w.check(5)
    assert w.state() == (-1, 0)
