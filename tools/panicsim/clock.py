"""Simulated time shared by boards and the air, in two modes with one interface.

``SimClock(speed)``: real time scaled by ``speed``, plus skips. For runs beside something
that lives in real time: a real gateway, ``panictool sim``, the demo, end-to-end tests.

``VirtualClock()``: time moves only when every board thread waits on the clock, and then
jumps straight to the earliest deadline anyone waits for (a board's ``time.sleep``, a
deep sleep's TimeAlarm, a test's ``clock.sleep``), or when ``skip`` moves it. A board busy
on real work (a Wi-Fi request over real sockets, writing its serial port) holds time
still, so nothing it waits for in real time can be overtaken. For tests: an hour of
heartbeats takes milliseconds, and nothing depends on the machine's speed.

Interface (both): ``now()``, ``sleep(s, halt)``, ``wait_until(deadline, halt, wake,
real_timeout)``, ``poke()`` (something a waiter's ``wake()`` looks at changed: a pin, a
console line, a halt), ``skip(s)``, ``member()`` (a board registers its firmware thread
before starting it) and ``hold()`` (the calling thread counts as a board for a while: time
then moves only while it waits on the clock, e.g. a test serving a bridge's serial port).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

POLL_REAL_S = 0.05  # how often a waiter re-checks halt and wake() without a poke


class Halted(BaseException):
    """Raised inside a firmware thread to stop it (power cut, stop). Firmware catches
    Exception only, so this always unwinds code.py."""


class Member:
    """A thread that time waits for (a board's firmware thread). Registered by the thread
    that starts it (``clock.member()``), so time cannot move before the new thread runs;
    the thread calls ``adopt()`` first and ``leave()`` last."""

    def __init__(self, clock: VirtualClock | None) -> None:
        self.clock = clock
        self.left = False

    def adopt(self) -> None:
        if self.clock is not None:
            self.clock._tls.member = self

    def leave(self) -> None:
        if self.clock is not None and not self.left:
            self.clock._leave(self)


class SimClock:
    """``now()`` = seconds since start x speed + skipped time. Waits honour a halt event,
    so power cuts interrupt sleeping firmware at once."""

    virtual = False

    def __init__(self, speed: float = 1.0) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.speed = speed
        self._t0 = time.monotonic()
        self._skipped = 0.0
        self._cond = threading.Condition()

    def now(self) -> float:
        return (time.monotonic() - self._t0) * self.speed + self._skipped

    def skip(self, seconds: float) -> None:
        """Jump forward (e.g. to the next heartbeat) and wake every sleeper."""
        with self._cond:
            self._skipped += seconds
            self._cond.notify_all()

    def poke(self) -> None:
        with self._cond:
            self._cond.notify_all()

    def real_seconds(self, seconds: float) -> float:
        """Real time that ``seconds`` of simulated time take."""
        return seconds / self.speed

    def sleep(self, seconds: float, halt: threading.Event | None = None) -> None:
        self.wait_until(self.now() + max(0.0, seconds), halt)

    def wait_until(self, deadline: float | None, halt: threading.Event | None = None,
                   wake: Callable[[], bool] | None = None,
                   real_timeout: float | None = None) -> bool:
        """Until simulated time reaches ``deadline`` (None: no deadline) or ``wake()`` is
        true: True when woken, False at the deadline or after ``real_timeout`` real
        seconds. Raises Halted when ``halt`` is set."""
        end = None if real_timeout is None else time.monotonic() + real_timeout
        with self._cond:
            while True:
                if halt is not None and halt.is_set():
                    raise Halted()
                if wake is not None and wake():
                    return True
                step = POLL_REAL_S
                if deadline is not None:
                    left = deadline - self.now()
                    if left <= 0:
                        return False
                    step = min(step, left / self.speed)
                if end is not None:
                    if time.monotonic() >= end:
                        return False
                    step = min(step, end - time.monotonic())
                self._cond.wait(max(step, 0.0))

    def member(self) -> Member:
        return Member(None)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        yield


class _Waiter:
    __slots__ = ("cond", "deadline", "member", "due", "seen")

    def __init__(self, cond: threading.Condition, deadline: float | None,
                 member: Member | None) -> None:
        self.cond = cond
        self.deadline = deadline
        self.member = member
        self.due = False  # time reached its deadline: it returns (busy until then)
        self.seen = -1  # the poke generation it last checked wake() and halt at


class VirtualClock:
    """Discrete-event time for simulations (see the module docstring)."""

    virtual = True

    def __init__(self, start: float = 0.0) -> None:
        self._now = float(start)
        self._lock = threading.RLock()
        self._members = 0  # registered threads that have not left
        self._waiters: set[_Waiter] = set()
        self._gen = 0
        self._tls = threading.local()

    def now(self) -> float:
        return self._now

    def real_seconds(self, seconds: float) -> float:
        return 0.0

    def skip(self, seconds: float) -> None:
        with self._lock:
            self._now += max(0.0, seconds)
            self._release()

    def poke(self) -> None:
        with self._lock:
            self._gen += 1
            for w in self._waiters:
                w.cond.notify()

    def sleep(self, seconds: float, halt: threading.Event | None = None) -> None:
        self.wait_until(self._now + max(0.0, seconds), halt)

    def member(self) -> Member:
        with self._lock:
            self._members += 1
        return Member(self)

    @contextlib.contextmanager
    def hold(self) -> Iterator[None]:
        m = self.member()
        prev = getattr(self._tls, "member", None)
        m.adopt()
        try:
            yield
        finally:
            self._tls.member = prev
            m.leave()

    def _leave(self, m: Member) -> None:
        with self._lock:
            m.left = True
            self._members -= 1
            if getattr(self._tls, "member", None) is m:
                self._tls.member = None
            self._advance()

    def _release(self) -> None:
        """Wake the waiters whose deadline has come (lock held)."""
        for w in self._waiters:
            if w.deadline is not None and w.deadline <= self._now and not w.due:
                w.due = True
                w.cond.notify()

    def _advance(self) -> None:
        """Jump to the earliest deadline when every member waits, settled (lock held)."""
        waiting = [w for w in self._waiters if w.member is not None]
        if len(waiting) < self._members:
            return  # a member is busy
        for w in waiting:
            if w.due or w.seen != self._gen:
                return  # about to run, or has not looked since the last poke
        nxt = None
        for w in self._waiters:
            if w.deadline is not None and not w.due and (nxt is None or w.deadline < nxt):
                nxt = w.deadline
        if nxt is None:
            return  # everyone waits for an event only
        if nxt > self._now:
            self._now = nxt
        self._release()

    def wait_until(self, deadline: float | None, halt: threading.Event | None = None,
                   wake: Callable[[], bool] | None = None,
                   real_timeout: float | None = None) -> bool:
        """As SimClock.wait_until. A member's wait lets time move; a non-member's (a test
        waiting for a console line, or for its press to end) never holds it back."""
        member = getattr(self._tls, "member", None)
        end = None if real_timeout is None else time.monotonic() + real_timeout
        with self._lock:
            w = _Waiter(threading.Condition(self._lock), deadline, member)
            self._waiters.add(w)
            try:
                while True:
                    gen = self._gen
                    if halt is not None and halt.is_set():
                        raise Halted()
                    if wake is not None and wake():
                        return True
                    if deadline is not None and self._now >= deadline:
                        return False
                    step = POLL_REAL_S
                    if end is not None:
                        step = min(step, end - time.monotonic())
                        if step <= 0:
                            return False
                    w.due = False
                    w.seen = gen
                    self._advance()
                    if not w.due:
                        w.cond.wait(step)
            finally:
                self._waiters.discard(w)
                self._advance()  # a non-member leaving may let time move on
