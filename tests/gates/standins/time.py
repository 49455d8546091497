# CircuitPython's time: MicroPython's plus monotonic() / monotonic_ns().
from utime import localtime, mktime, sleep, time, time_ns  # noqa: F401 (re-exported)

_T0 = time_ns()


def monotonic():
    return (time_ns() - _T0) / 1e9 + 1000.0


def monotonic_ns():
    return time_ns() - _T0 + 1000000000000
