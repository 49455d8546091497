"""``watchdog``: the mode and exception names (the timer is ``microcontroller.watchdog``)."""

from types import SimpleNamespace


class WatchDogMode:
    RAISE = "RAISE"
    RESET = "RESET"


def module(b) -> SimpleNamespace:
    return SimpleNamespace(WatchDogMode=WatchDogMode, WatchDogTimeout=RuntimeError)
