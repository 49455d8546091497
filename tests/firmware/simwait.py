"""Waiting on conditions in simulation tests (panicsim's SimClock or VirtualClock)."""

import time


def until(clock, pred, what: str, step: float = 0.05, real_timeout: float = 30.0):
    """pred()'s first truthy value, checked every ``step`` simulated seconds: on a
    VirtualClock the test's own sleep lets time move (and bounds how far it moves
    before the next look, when the test holds the clock); ``real_timeout`` only guards
    against a hang."""
    end = time.monotonic() + real_timeout
    while True:
        v = pred()
        if v:
            return v
        if time.monotonic() > end:
            raise AssertionError(f"timed out waiting for {what}")
        clock.sleep(step)
