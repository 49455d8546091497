from utime import ticks_ms as _ticks_ms


def ticks_ms():
    return _ticks_ms() & ((1 << 29) - 1)


class _Runtime:
    serial_connected = False
    usb_connected = True
    autoreload = False


runtime = _Runtime()
