"""``board``: the board id, its pins by name (``board.D5``, ``board.LED``...), the SPI bus
(``board.SPI()`` is the one bus object, as on CircuitPython) and ``board.I2C()``.

``Pin`` is one pin of the simulated board: a level driven by the simulator (a button, a
switch) and an output driven by the firmware (LED, chip select), with listeners (the
radio's CS and RESET)."""

import types

from panicsim.fakes.busio import I2C


class Pin:
    def __init__(self, board, name: str) -> None:
        self.board = board
        self.name = name
        self.level = True  # pulled up, idle
        self.output = None  # last value written by firmware
        self.changes: list = []  # (time, level) for inputs driven by the simulator
        self.listeners: list = []  # called with the new level when the firmware drives it

    def set_output(self, level: bool) -> None:
        """The firmware drives the pin (a DigitalInOut output)."""
        if self.output != level:
            self.output = level
            for fn in self.listeners:
                fn(level)

    def drive(self, level: bool) -> None:
        """The simulator drives the pin (a press, a switch)."""
        if level != self.level:
            self.level = level
            self.changes.append((self.board.clock.now(), level))
            self.board.clock.poke()  # a sleeping board's PinAlarm looks again

    def __repr__(self) -> str:
        return f"board.{self.name}"


class _Board(types.SimpleNamespace):
    def __getattr__(self, name):
        if name.startswith("_") or not (name[0].isupper()):
            raise AttributeError(name)
        return self._sim.pin(name)


def module(b) -> _Board:
    return _Board(_sim=b, board_id=b.board_id, SPI=lambda *a, **kw: b.spi,
                  I2C=lambda *a, **kw: I2C(b))
