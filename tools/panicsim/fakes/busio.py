"""``busio``: the board's one SPI bus (with the SX127x model on it) and an I2C bus with a
MAX17048 fuel gauge at 0x36 reporting the board's ``battery_mv``."""

from types import SimpleNamespace


class I2C:
    def __init__(self, board, *a, **kw) -> None:
        self.board = board

    def try_lock(self) -> bool:
        return True

    def unlock(self) -> None:
        pass

    def writeto_then_readfrom(self, addr, out, into) -> None:
        if addr != 0x36:
            raise OSError(19, f"no device at 0x{addr:02x}")
        raw = int(self.board.battery_mv * 1_000_000 / 78125)  # VCELL, 78.125 uV per LSB
        into[0], into[1] = (raw >> 8) & 0xFF, raw & 0xFF


def module(b) -> SimpleNamespace:
    return SimpleNamespace(SPI=lambda *a, **kw: b.spi, I2C=lambda *a, **kw: I2C(b))
