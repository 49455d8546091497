import time

import gate_config
import sx127x


class Pin:
    def __init__(self, name):
        self.name = name
        self.level = True  # pulled up
        self.output = None
        self.listeners = []
        self.changes = []  # (time.monotonic(), level) as the outside world drove it
        self.seq = 0  # changes so far (``changes`` keeps the last 64)

    def set_output(self, v):
        if self.output != v:
            self.output = v
            for fn in self.listeners:
                fn(v)

    def drive(self, level, at=None):
        """The outside world (a finger on the button) sets the level."""
        if level != self.level:
            self.level = level
            self.changes.append((time.monotonic() if at is None else at, level))
            self.seq += 1
            del self.changes[:-64]

    def __repr__(self):
        return "board." + self.name


_pins = {}


def _pin(name):
    if name not in _pins:
        _pins[name] = Pin(name)
    return _pins[name]


def _on_tx(chip, packet, modem):
    print(f"SX127X-TX sf={modem['sf']} bw={modem['bw_hz']} len={len(packet)} {packet.hex()}")
    return 0.05


board_id = gate_config.BOARD_ID
_bus = sx127x.SPIBus()
for _name in gate_config.PINS_LOW:
    _pin(_name).level = False
if getattr(gate_config, "LINK", None) is not None:  # a host harness: tests/tools/mpboard.py
    import linkboard

    _chip = linkboard.wire(_pin)
    if not gate_config.RADIO_PINS:
        _chip = None
elif gate_config.RADIO_PINS:
    _chip = sx127x.SX127x(time.monotonic, _on_tx, lambda: -118.0)
if gate_config.RADIO_PINS:
    _bus.attach(_chip)
    _pin(gate_config.RADIO_PINS[0]).listeners.append(_chip.cs)
    _pin(gate_config.RADIO_PINS[1]).listeners.append(_chip.rst)


def SPI():
    return _bus


class _I2C:
    def try_lock(self):
        return True

    def unlock(self):
        pass

    def writeto_then_readfrom(self, addr, out, into):
        if addr != 0x36:
            raise OSError(19)
        raw = 3900 * 1000000 // 78125  # MAX17048 VCELL for 3.9 V
        into[0] = (raw >> 8) & 0xFF
        into[1] = raw & 0xFF


def I2C():
    return _I2C()


def __getattr__(name):
    if name[:1].isupper():
        return _pin(name)
    raise AttributeError(name)
