"""panicsim's clocks: VirtualClock moves only when every board thread waits, jumps to the
earliest deadline, never overtakes a pin change or a busy board; SimClock stays real time.
"""

import threading
import time

import pytest

from panicsim import SimClock, VirtualClock
from panicsim.clock import Halted


def _member_thread(clock: VirtualClock, body, start: bool = True) -> threading.Thread:
    """A thread registered as a board's is: the member exists before the thread runs."""
    m = clock.member()

    def run() -> None:
        m.adopt()
        try:
            body()
        finally:
            m.leave()

    t = threading.Thread(target=run, daemon=True)
    if start:
        t.start()
    return t


def test_time_jumps_to_each_deadline_in_order() -> None:
    clock = VirtualClock()
    log: list = []

    def board(name: str, period: float, n: int):
        def body() -> None:
            for _ in range(n):
                clock.sleep(period)
                log.append((clock.now(), name))
        return body

    threads = [_member_thread(clock, board("a", 3600.0, 3), start=False),
               _member_thread(clock, board("b", 1000.0, 5), start=False)]
    for t in threads:  # both registered before either runs, as two powered boards
        t.start()
    for t in threads:
        t.join(10)
    assert [t for t, _ in log] == sorted(t for t, _ in log)
    assert (10800.0, "a") in log and (5000.0, "b") in log and clock.now() == 10800.0


def test_a_busy_member_holds_time_still() -> None:
    clock = VirtualClock()
    started = threading.Event()
    release = threading.Event()

    def body() -> None:
        started.set()
        release.wait(5)  # real work (a Wi-Fi request, say): not a wait on the clock
        clock.sleep(1.0)

    t = _member_thread(clock, body)
    started.wait(5)
    woke = []
    waiter = threading.Thread(target=lambda: (clock.sleep(50.0), woke.append(clock.now())))
    waiter.start()
    waiter.join(0.3)
    assert waiter.is_alive() and clock.now() == 0.0  # the busy board holds time
    release.set()
    waiter.join(5)
    t.join(5)
    assert woke == [50.0]


def test_without_boards_a_sleep_is_a_jump() -> None:
    clock = VirtualClock(start=100.0)
    t0 = time.monotonic()
    clock.sleep(86400.0)
    assert clock.now() == 86500.0 and time.monotonic() - t0 < 1.0


def test_a_poke_is_seen_before_time_moves_on() -> None:
    """A deep-sleeping board whose button is pressed wakes at the press, even when the test
    then sleeps: the press must not be overtaken by the test's own deadline."""
    clock = VirtualClock()
    pressed = threading.Event()
    woke_at: list = []
    asleep = threading.Event()

    def body() -> None:
        asleep.set()
        clock.wait_until(3600.0, wake=pressed.is_set)
        woke_at.append(clock.now())
        clock.sleep(0.5)

    with clock.hold():  # the test is a member too: nothing moves until it waits
        t = _member_thread(clock, body)
        asleep.wait(5)
        time.sleep(0.05)  # let it settle into its wait, as a sleeping board
        pressed.set()  # the press (a Pin.drive pokes the clock, as here)
        clock.poke()
        clock.sleep(2.0)  # without the poke's re-check, time would jump to 2.0 first
        t.join(5)
    assert woke_at == [0.0] and clock.now() == 2.0


def test_halt_interrupts_a_wait_and_leaving_lets_time_move() -> None:
    clock = VirtualClock()
    halt = threading.Event()
    out: list = []

    def body() -> None:
        try:
            clock.wait_until(None, halt)  # an event-only wait: holds time at 0
        except Halted:
            out.append("halted")

    t = _member_thread(clock, body)
    time.sleep(0.05)
    halt.set()
    clock.poke()
    t.join(5)
    assert out == ["halted"] and not t.is_alive()
    clock.sleep(5.0)  # no member left: a jump
    assert clock.now() == 5.0


def test_hold_makes_the_test_a_member() -> None:
    clock = VirtualClock()
    ticks: list = []

    def body() -> None:
        for _ in range(100):
            clock.sleep(0.001)
            ticks.append(clock.now())

    with clock.hold():
        t = _member_thread(clock, body)
        time.sleep(0.2)  # real time while the test works: simulated time stands still
        assert clock.now() == 0.0 and not ticks
        clock.sleep(0.0105)  # the test waits: time moves, exactly to its deadline
        assert clock.now() == pytest.approx(0.0105) and len(ticks) == 10
    t.join(5)
    assert len(ticks) == 100


def test_wait_until_gives_up_after_real_timeout() -> None:
    for clock in (VirtualClock(), SimClock()):
        t0 = time.monotonic()
        assert clock.wait_until(None, wake=lambda: False, real_timeout=0.1) is False
        assert 0.09 <= time.monotonic() - t0 < 2.0


def test_sim_clock_is_real_time_scaled() -> None:
    clock = SimClock(speed=10.0)
    t0 = time.monotonic()
    clock.sleep(1.0)  # 0.1 s of real time
    assert 0.09 <= time.monotonic() - t0 < 1.0 and clock.now() >= 1.0
    flag = threading.Event()
    threading.Timer(0.05, lambda: (flag.set(), clock.poke())).start()
    assert clock.wait_until(clock.now() + 100.0, wake=flag.is_set) is True
