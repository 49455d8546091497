"""A virtual LoRa bridge: the real firmware/bridge/code.py on a simulated Feather RP2040
RFM95, its usb_cdc.data on a pseudo-terminal a gateway opens with pyserial."""

from pathlib import Path

from panicsim.board import SimBoard
from panicsim.serialport import PtySerial


class VirtualBridge(SimBoard):
    kind = "bridge"
    board_id = "adafruit_feather_rp2040_rfm"

    def __init__(self, air, settings: dict | None = None, name: str = "bridge",
                 link_dir: str | None = None, **kw) -> None:
        base = {"PB_FREQUENCY_MHZ": "921.4", "PB_SF": 9}
        base.update(settings or {})
        super().__init__(air=air, settings=base, name=name, **kw)
        self.serial = PtySerial(link_dir)

    @property
    def port_path(self) -> str:
        """Stable path of the bridge's serial port (a symlink to the current pty)."""
        return self.serial.path

    def unplug(self) -> None:
        """USB unplugged: the port disappears and the board loses power."""
        self.serial.unplug()
        self.power_cut()

    def replug(self) -> None:
        """USB plugged back: the port reappears at the same path; the firmware cold-boots."""
        self.serial.plug()
        self.start()

    def stop(self, timeout: float = 5.0) -> None:
        """Stop the firmware and remove the serial port."""
        self._halt_thread(timeout)
        self.serial.close()


def start_virtual_bridge(air, settings: dict | None = None, name: str = "bridge",
                         link_dir: str | Path | None = None, **kw) -> VirtualBridge:
    """Start a virtual bridge on ``air``; returns it running (``.port_path`` to open)."""
    b = VirtualBridge(air, settings=settings, name=name,
                      link_dir=str(link_dir) if link_dir else None, **kw)
    b.start()
    b.wait_for_line(lambda ln: ln.startswith("PANIC-BRIDGE"), timeout=10)
    return b
