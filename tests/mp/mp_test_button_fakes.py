"""Fakes shared by the button/bridge device-logic tests (MicroPython and CPython).

No test functions here: the runner imports it and finds nothing to run.
"""


DEVICE_ID = 0x12345678
KEY = bytes(range(16))
OTHER_KEY = bytes(range(1, 17))


class PowerCut(Exception):
    pass


class CutNvm:
    """bytearray-like NVM that counts byte writes and can lose power after N of them."""

    def __init__(self, size=256, cut_after=None):
        self.data = bytearray(b"\xff" * size)
        self.byte_writes = 0
        self.cut_after = cut_after

    def __len__(self):
        return len(self.data)

    def __getitem__(self, i):
        return self.data[i]

    def __setitem__(self, sl, value):
        if not isinstance(sl, slice):
            sl = slice(sl, sl + 1)
            value = bytes((value,))
        start = sl.start or 0
        for i in range(len(value)):
            if self.cut_after is not None and self.byte_writes >= self.cut_after:
                raise PowerCut()
            self.data[start + i] = value[i]
            self.byte_writes += 1


class Clock:
    def __init__(self, t=1000.0):
        self.t = t

    def monotonic(self):
        return self.t

    def sleep(self, s):
        self.t += s


class Rand:
    """Deterministic rand(): cycles through given values."""

    def __init__(self, values=(0.5,)):
        self.values = values
        self.i = 0

    def __call__(self):
        v = self.values[self.i % len(self.values)]
        self.i += 1
        return v


def unload():
    """Drop device-logic modules so the next test compiles into a free heap."""
    import gc
    import sys

    if sys.implementation.name != "micropython":
        return  # CPython: other tests in the process share these modules
    for name in list(sys.modules):
        if name.startswith("panicbutton") or name.startswith("panicbridge") \
                or name.startswith("panicproto"):
            del sys.modules[name]
    gc.collect()


def release(g):
    """Last test of each device-logic module: unload what it imported so the next module
    (the runner keeps going in the same 64 KB heap) starts from an empty heap."""
    import gc
    import sys

    if sys.implementation.name != "micropython":
        return
    for name in list(sys.modules):
        if name.startswith("panicbutton") or name.startswith("panicbridge") \
                or name.startswith("panicproto") or name == "mp_test_button_fakes":
            del sys.modules[name]
    g.clear()
    gc.collect()
