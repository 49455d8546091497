"""``digitalio``: DigitalInOut over a board pin; the LED's changes go to ``led_log``."""

from types import SimpleNamespace


class Pull:
    UP = "UP"
    DOWN = "DOWN"


class Direction:
    INPUT = "INPUT"
    OUTPUT = "OUTPUT"


def module(b) -> SimpleNamespace:
    class DigitalInOut:
        def __init__(self, pin) -> None:
            self.pin = pin
            self.direction = Direction.INPUT
            self.pull = None

        def switch_to_input(self, pull=None) -> None:
            self.direction = Direction.INPUT
            self.pull = pull

        def switch_to_output(self, value=False, drive_mode=None) -> None:
            self.direction = Direction.OUTPUT
            self.value = value

        @property
        def value(self) -> bool:
            if self.direction == Direction.OUTPUT:
                return bool(self.pin.output)
            return self.pin.level

        @value.setter
        def value(self, v) -> None:
            v = bool(v)
            if self.pin.output != v and self.pin.name == "LED":
                b.led_log.append((b.clock.now(), v))
            self.pin.set_output(v)

        def deinit(self) -> None:
            pass

    return SimpleNamespace(DigitalInOut=DigitalInOut, Pull=Pull, Direction=Direction)
