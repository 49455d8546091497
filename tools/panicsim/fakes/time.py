"""``time`` on the board's simulated clock; a halted board stops in any call."""

import time as _host
from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    clock = b.clock

    def monotonic() -> float:
        b.check_alive()
        return clock.now()

    def sleep(s: float) -> None:
        b.check_alive()
        clock.sleep(s, b.halt)

    return SimpleNamespace(monotonic=monotonic, monotonic_ns=lambda: int(clock.now() * 1e9),
                           time=lambda: int(1_700_000_000 + clock.now()), sleep=sleep,
                           localtime=_host.localtime, mktime=_host.mktime,
                           struct_time=_host.struct_time)
