"""``analogio``: the battery divider's ADC (half the board's ``battery_mv``, 3.3 V ref)."""

from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    class AnalogIn:
        reference_voltage = 3.3

        def __init__(self, pin) -> None:
            self.pin = pin

        @property
        def value(self) -> int:
            return min(65535, int(b.battery_mv / 2.0 / 1000 / 3.3 * 65535))

        def deinit(self) -> None:
            pass

    return SimpleNamespace(AnalogIn=AnalogIn)
