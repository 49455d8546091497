# CircuitPython's sys: MicroPython's, reporting CircuitPython as the implementation (the
# Adafruit libraries import CPython-only typing modules unless it says "circuitpython").
# The VM's own sys cannot be shadowed by a file, so launch.py puts this in sys.modules.
from usys import *  # noqa: F403
from usys import implementation as _mp


class _Implementation:
    name = "circuitpython"
    version = (9, 2, 1)
    _machine = "boot gate"
    _mpy = _mp._mpy


implementation = _Implementation()
