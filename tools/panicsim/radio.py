"""The RFM95 module of a simulated board: the register-level SX127x model (panicsim.sx127x)
on the board's SPI bus, joined to the virtual air.

The firmware talks to it only through the real ``adafruit_rfm.rfm9x`` library over SPI, so
``sent`` holds exactly the packets the library made the chip transmit (the bytes it wrote to
the FIFO, ``RegPayloadLength`` long, with the modulation its registers set), and what it
receives is what the chip's FIFO and RSSI/SNR registers say.
"""

from __future__ import annotations

import threading
from typing import Any

from panicsim.sx127x import SX127x


class SimRadio:
    """One RFM95 on a board (the board wires its CS and RESET pins to ``cs``/``rst``)."""

    def __init__(self, air: Any, board: Any, name: str) -> None:
        self.air = air
        self.board = board
        self.name = name
        self.lock = threading.RLock()
        self.chip = SX127x(board.clock.now, self._transmit, self._noise)
        self.sent: list[tuple[float, int, bytes]] = []  # (time, sf, packet as on air)
        self.modem: dict | None = None  # modulation of the packet being transmitted
        self.attached = False

    # -- what the air sees ------------------------------------------------------------
    @property
    def frequency_mhz(self) -> float:
        return self.chip.modem()["frequency_mhz"]

    @property
    def spreading_factor(self) -> int:
        return self.chip.modem()["sf"]

    @property
    def signal_bandwidth(self) -> int:
        return self.chip.modem()["bw_hz"]

    @property
    def crc_error_count(self) -> int:
        return self.chip.crc_errors

    def attach(self) -> None:
        if self.air is not None and not self.attached:
            self.air.attach(self)
            self.attached = True

    def detach(self) -> None:
        if self.air is not None and self.attached:
            self.air.detach(self)
            self.attached = False

    def power_off(self) -> None:
        """Supply gone: off the air, every register back to its reset value."""
        self.detach()
        with self.lock:
            self.chip.reset()

    def deliver(self, tx: Any) -> None:
        """A transmission from the air (matching this radio's frequency, SF and bandwidth
        when it started)."""
        with self.lock:
            self.chip.deliver(tx.data, tx.start, tx.end, None, self.air.rssi, self.air.snr,
                              tx.crc_ok)

    # -- chip hooks -------------------------------------------------------------------
    def _transmit(self, chip: SX127x, packet: bytes, modem: dict) -> float:
        self.board.check_alive()
        now = self.board.clock.now()
        self.sent.append((now, modem["sf"], bytes(packet)))
        del self.sent[:-500]
        if self.air is None or not self.attached:
            from panicproto import airtime

            return airtime.time_on_air_ms(len(packet), modem["sf"], modem["bw_hz"],
                                          modem["cr"], modem["preamble"], modem["crc"],
                                          not modem["implicit_header"],
                                          modem["low_dr_opt"]) / 1000.0
        self.modem = modem
        return self.air.transmit(self, packet, modem["frequency_mhz"], modem["sf"],
                                 modem["bw_hz"])

    def _noise(self) -> float:
        return self.air.noise_dbm + self.air.rng.uniform(-2, 2) if self.air else -120.0

    # -- SPI side (called by the board's bus with the lock held) ------------------------
    def spi_exchange(self, data: bytes) -> bytearray:
        with self.lock:
            return self.chip.spi_exchange(data)

    @property
    def selected(self) -> bool:
        return self.chip.selected

    def cs(self, level: bool) -> None:
        with self.lock:
            self.chip.cs(level)

    def rst(self, level: bool) -> None:
        with self.lock:
            self.chip.rst(level)
