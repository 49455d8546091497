"""``supervisor``: ``ticks_ms`` on the simulated clock (29-bit, as CircuitPython's), the
runtime's USB state."""

from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    def ticks_ms() -> int:
        b.check_alive()
        return int(b.clock.now() * 1000) & (2**29 - 1)

    return SimpleNamespace(
        ticks_ms=ticks_ms,
        runtime=SimpleNamespace(serial_connected=b.usb is not None, usb_connected=True,
                                autoreload=False),
        disable_autoreload=lambda: None)
