"""The gateway's one rate limiter: a token bucket, and the two ways the gateway uses it.

Why one: outside input (forged frames, malformed HTTP, a babbling bridge, a dispatch that
refuses us all weekend) can make the gateway log or work without end, and each place used to
carry its own hand-written limiter with its own edge cases. Here:

- :class:`TokenBucket`: ``rate`` tokens a second, at most ``burst`` saved up. A bucket with
  ``burst=1`` is "at most once every 1/rate seconds".
- :class:`LogBudget`: a thread-safe bucket for log lines that also counts the lines it held
  back, so the next line that gets through can say how many were suppressed.
- :class:`Buckets`: one bucket per key (an HTTP client's address), the least recently seen
  keys forgotten beyond ``max_keys`` so a scan of many addresses cannot grow memory.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

Clock = Callable[[], float]


class TokenBucket:
    """``rate`` tokens a second, up to ``burst``; starts full. Not thread-safe by itself."""

    __slots__ = ("rate", "burst", "tokens", "last", "clock")

    def __init__(self, rate: float, burst: float, clock: Clock = time.monotonic) -> None:
        self.rate = float(rate)
        self.burst = float(burst)
        self.tokens = float(burst)
        self.clock = clock
        self.last = clock()

    def take(self) -> bool:
        """Spend one token if there is one."""
        now = self.clock()
        self.tokens = min(self.burst, self.tokens + (now - self.last) * self.rate)
        self.last = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def wait_s(self) -> float:
        """Seconds until the next token (0 when one is there), as of the last ``take``."""
        return 0.0 if self.tokens >= 1.0 else (1.0 - self.tokens) / self.rate


class LogBudget:
    """At most ``per_min`` log lines a minute (bursts up to ``burst``, default ``per_min``),
    and how many were held back since the last one that got through. Thread-safe: the
    pipeline thread, the event loop and the serial threads share some budgets."""

    def __init__(self, per_min: float, clock: Clock = time.monotonic,
                 burst: float | None = None) -> None:
        self.per_min = float(per_min)
        self._bucket = TokenBucket(self.per_min / 60.0,
                                   self.per_min if burst is None else burst, clock)
        self._held = 0
        self._lock = threading.Lock()

    @classmethod
    def every(cls, seconds: float, clock: Clock = time.monotonic) -> LogBudget:
        """One line per ``seconds`` at most (the first one at once)."""
        return cls(60.0 / seconds, clock, burst=1)

    def take(self) -> int | None:
        """None when this line must be dropped; else how many were dropped before it."""
        with self._lock:
            if self._bucket.take():
                held, self._held = self._held, 0
                return held
            self._held += 1
            return None


class Buckets:
    """A :class:`TokenBucket` per key, at most ``max_keys`` remembered (least recent
    forgotten: a forgotten key starts again with a full bucket)."""

    def __init__(self, rate: float, burst: float, max_keys: int = 10000,
                 clock: Clock = time.monotonic) -> None:
        self.rate = rate
        self.burst = burst
        self.max_keys = max_keys
        self.clock = clock
        self._b: OrderedDict[str, TokenBucket] = OrderedDict()

    def allow(self, key: str) -> tuple[bool, float]:
        """(allowed, seconds until ``key``'s next token)."""
        bucket = self._b.pop(key, None)
        if bucket is None:
            bucket = TokenBucket(self.rate, self.burst, self.clock)
        ok = bucket.take()
        self._b[key] = bucket
        while len(self._b) > self.max_keys:
            self._b.popitem(last=False)
        return ok, 0.0 if ok else bucket.wait_s()
