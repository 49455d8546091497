"""``usb_cdc``: the data channel is the board's pty (a bridge's ``serial``), else None."""

from types import SimpleNamespace


def module(b) -> SimpleNamespace:
    return SimpleNamespace(data=getattr(b, "serial", None), console=None,
                           enable=lambda **kw: None)
