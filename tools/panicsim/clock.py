"""Simulated time shared by boards and the air: real time scaled by ``speed``, plus skips."""

import threading
import time


class Halted(BaseException):
    """Raised inside a firmware thread to stop it (power cut, stop). Firmware catches
    Exception only, so this always unwinds code.py."""


class SimClock:
    """``now()`` = seconds since start x speed + skipped time. ``sleep`` honours a halt
    event so power cuts interrupt sleeping firmware at once."""

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

    def sleep(self, seconds: float, halt: threading.Event | None = None) -> None:
        end = self.now() + max(0.0, seconds)
        with self._cond:
            while True:
                if halt is not None and halt.is_set():
                    raise Halted()
                left = end - self.now()
                if left <= 0:
                    return
                self._cond.wait(min(left / self.speed, 0.05))
