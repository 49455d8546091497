"""``sys`` as CircuitPython has it: ``implementation.name == "circuitpython"``, its path,
stdout/stderr on the board's console, ``print_exception``. ``modules`` is set to the
run's module table by ``SimBoard.module_space``."""

import traceback
from types import SimpleNamespace

from panicsim.fakes.os import CIRCUITPY_VERSION


class _Console:
    def __init__(self, b) -> None:
        self.b = b

    def write(self, text: str) -> int:
        for ln in str(text).splitlines():
            if ln:
                self.b.say(ln)
        return len(text)

    def flush(self) -> None:
        pass


def _exit(code=0):
    raise SystemExit(code)


def module(b) -> SimpleNamespace:
    console = _Console(b)

    def print_exception(exc, file=None) -> None:
        for ln in traceback.format_exception(exc):
            (file or console).write(ln)

    version = ".".join(str(v) for v in CIRCUITPY_VERSION)
    return SimpleNamespace(
        implementation=SimpleNamespace(name="circuitpython", version=CIRCUITPY_VERSION,
                                       _machine=b.board_id, _mpy=6),
        platform="Espressif" if b.wifi_capable else "RP2040",
        path=["", "/", ".frozen", "/lib"], modules={}, argv=[], byteorder="little",
        maxsize=2**31 - 1, version="3.4.0; CircuitPython " + version,
        version_info=(3, 4, 0), stdout=console, stderr=console, stdin=None,
        print_exception=print_exception, exit=_exit)
