# CircuitPython's time: MicroPython's plus monotonic() / monotonic_ns(). sleep() keeps the
# board's wires alive (hwlink: radio packets and button presses arrive while it sleeps).
import hwlink
from utime import localtime, mktime, time, time_ns  # noqa: F401 (re-exported)

_T0 = time_ns()


def monotonic():
    return (time_ns() - _T0) / 1e9 + 1000.0


def monotonic_ns():
    return time_ns() - _T0 + 1000000000000


def sleep(seconds):
    hwlink.wait(seconds)
