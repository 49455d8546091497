"""Which USB serial port is which: the one rule the gateway (its bridge's data channel) and
the installer's tools (a board's console) both use.

A CircuitPython board shows up as one serial port (the REPL console) or, with ``usb_cdc``
data enabled as on the bridge, two: the console on the first USB interface and the data
channel on the second. The OS may list them in any order, and may or may not report
interface names ("CircuitPython CDC control" / "CircuitPython CDC2 data"), so ports are
grouped by board (USB serial number, else the USB path without the interface) and ordered
by interface. Several boards at once are never guessed between: a wrong guess writes a key
to the wrong button, or makes the gateway talk its link protocol to a console.

Public for the tools (like ``panicgw.access``): it imports nothing else of the gateway.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from serial.tools import list_ports

ADAFRUIT_VID = 0x239A  # Adafruit's USB vendor id: CircuitPython boards


class PortError(Exception):
    """No port, or no single port, fits; ``hint`` says what the person should do."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


@dataclass(frozen=True)
class Board:
    """One USB device's serial ports, in USB interface order."""

    key: str
    ports: tuple[Any, ...]  # serial.tools.list_ports_common.ListPortInfo

    @property
    def console(self) -> str:
        return str(self.ports[0].device)

    @property
    def data(self) -> str | None:
        """The data channel: the port that names itself so, else the later interface of a
        board with two or more; None for a board with only its console."""
        for p in self.ports:
            text = f"{getattr(p, 'interface', None) or ''} {p.description or ''}".lower()
            if "data" in text or "cdc2" in text:
                return str(p.device)
        return str(self.ports[-1].device) if len(self.ports) > 1 else None


def _board_key(p: Any) -> str:
    # ``1-1.4:1.0`` and ``1-1.4:1.2`` are two interfaces of one board.
    return getattr(p, "serial_number", None) or (p.location or "").partition(":")[0] \
        or p.device


def _order(p: Any) -> tuple[int, str, str]:
    """Interface order: a named console first, a named data channel last, else location."""
    text = f"{getattr(p, 'interface', None) or ''} {p.description or ''}".lower()
    named = 2 if ("data" in text or "cdc2" in text) else 0 if "control" in text else 1
    return (named, p.location or "", p.device)


def boards(vid: int = ADAFRUIT_VID) -> list[Board]:
    """Every USB device with vendor ``vid``, its ports grouped, ordered by console path."""
    grouped: dict[str, list[Any]] = {}
    for p in list_ports.comports():
        if p.vid == vid:
            grouped.setdefault(_board_key(p), []).append(p)
    found = [Board(k, tuple(sorted(ps, key=_order))) for k, ps in grouped.items()]
    return sorted(found, key=lambda b: b.console)


def usb_ports(vid: int = ADAFRUIT_VID) -> list[str]:
    """Every serial port of vendor ``vid``: each board's console, then its other ports."""
    return [str(p.device) for b in boards(vid) for p in b.ports]


def console_port(vid: int = ADAFRUIT_VID) -> str:
    """The console port of the one board with vendor ``vid``; PortError when none or several."""
    found = boards(vid)
    if not found:
        raise PortError(f"no CircuitPython board found on USB (vendor 0x{vid:04X})",
                        "plug the board in with a data cable, or pass --port /dev/ttyACM0")
    consoles = [b.console for b in found]
    if len(consoles) > 1:
        raise PortError(f"{len(consoles)} CircuitPython boards found on USB: "
                        + ", ".join(consoles),
                        f"unplug the others or pass --port (e.g. --port {consoles[0]})")
    return consoles[0]


def bridge_data_port(vid: int = ADAFRUIT_VID) -> tuple[str | None, str]:
    """(the bridge's data port or None, how it was found or why not), for the daemon's
    auto-detection and diag. A board with only a console is not a bridge (a button plugged
    in for service, or a bridge flashed without its data channel)."""
    found = boards(vid)
    bridges = [b for b in found if b.data is not None]
    if len(bridges) == 1:
        b = bridges[0]
        return b.data, f"USB vendor 0x{vid:04X}, data channel of {b.ports[0].description}"
    if len(bridges) > 1:
        return None, (f"{len(bridges)} boards with a data channel on USB: "
                      + ", ".join(str(b.data) for b in bridges) + "; set [serial] port")
    if found:
        return None, (f"board at {found[0].console} has no data channel (a button, or a bridge "
                      "without its firmware: panictool flash --role bridge)")
    return None, f"no USB serial device with vendor 0x{vid:04X}"
