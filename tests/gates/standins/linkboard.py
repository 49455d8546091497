# The board's hardware in a host harness (board.py imports this when gate_config.LINK is
# set): the RFM95 on the host's simulated air, the pins the host drives.
import time

import hwlink
import hwwire
import sx127x

MODEM_REGS = (sx127x.REG_OP_MODE, sx127x.REG_FRF_MSB, sx127x.REG_FRF_MID, sx127x.REG_FRF_LSB,
              sx127x.REG_MODEM_CONFIG1, sx127x.REG_MODEM_CONFIG2, sx127x.REG_MODEM_CONFIG3,
              sx127x.REG_PREAMBLE_MSB, sx127x.REG_PREAMBLE_LSB)


class LinkedSX127x(sx127x.SX127x):
    """What the chip transmits goes to the host, which puts it on its air and answers with
    the airtime; what the air delivers to this radio comes back as ``rx`` messages; the
    host learns every change of modulation (the air delivers only to radios on the
    sender's frequency, SF and bandwidth)."""

    def __init__(self):
        self._sent_modem = None
        self._noise_dbm = hwwire.hello["noise"]
        sx127x.SX127x.__init__(self, hwlink.wall, self._tx, self._noise)

    def _noise(self):
        return self._noise_dbm

    def _tx(self, chip, packet, modem):
        return hwwire.request({"t": "tx", "p": hwwire.hexlify(packet), "m": modem,
                               "at": hwlink.wall()}, "txdone")["dur"]

    def spi_exchange(self, data):
        hwlink.pump()
        return sx127x.SX127x.spi_exchange(self, data)

    def _write_reg(self, a, v):
        sx127x.SX127x._write_reg(self, a, v)
        if a in MODEM_REGS:
            self.announce()

    def reset(self):
        sx127x.SX127x.reset(self)
        self.announce()

    def announce(self):
        m = self.modem()
        if m != self._sent_modem:
            self._sent_modem = m
            hwwire.send({"t": "modem", "m": m})

    def on_rx(self, msg):
        self.deliver(hwwire.unhexlify(msg["p"]), msg["s"], msg["e"], None, msg["rssi"],
                     msg["snr"], msg["ok"])


def wire(pin):
    """Connect: ``pin(name)`` gives the board's pin objects. Returns the radio chip."""
    hwlink.wire = hwwire
    hello = hwwire.hello
    for name in hello["pins"]:
        pin(name).level = bool(hello["pins"][name])
    hwwire.on("pin", lambda m: pin(m["n"]).drive(bool(m["v"]), time.monotonic()
                                                 - (hwlink.wall() - m["at"])))
    chip = LinkedSX127x()
    hwwire.on("rx", chip.on_rx)
    return chip
