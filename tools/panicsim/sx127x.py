"""A register-level model of the Semtech SX1276/77/78/79 (HopeRF RFM95W) LoRa modem.

The simulated board puts it behind a fake ``busio.SPI`` so the real CircuitPython radio
library (``adafruit_rfm.rfm9x``) drives it exactly as it drives the chip: by SPI register
reads and writes with chip select framing. Nothing here knows that library; it models the
registers the datasheet defines (version, op mode, frequency, modem config, FIFO and its
pointers, payload length, IRQ flags, packet RSSI/SNR, current RSSI), so the simulator can
never be more forgiving than the chip: a packet is what the library put in the FIFO and
``RegPayloadLength`` says, a wrong chip-select pin reads 0x00, the FIFO is lost in sleep,
LoRa mode can only be entered from sleep, a packet is received only while the modem stays
in receive mode for all of it.

Written to run under MicroPython too (no typing, no dataclasses): the boot gate
(tests/gates/test_boot_tree.py) hands the same model to the firmware on the MicroPython VM.

Hooks: ``clock()`` returns seconds; ``on_transmit(chip, packet, modem)`` is called when a
packet starts (``modem`` = dict of frequency_mhz, sf, bw_hz, cr, preamble, crc,
implicit_header, low_dr_opt) and returns its airtime in seconds; ``noise_dbm()`` gives the
current RSSI. ``deliver(packet, start, end, modem, rssi, snr, crc_ok)`` hands the chip a
packet that is on the air between ``start`` and ``end`` (seconds of ``clock``).
"""

VERSION = 0x12
FXOSC = 32000000.0
FSTEP = FXOSC / 524288  # frequency synthesiser step, Hz
BANDWIDTHS = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)
HF_RSSI_OFFSET = 157  # RSSI = -157 + register on the high-frequency port (> 525 MHz)
LF_RSSI_OFFSET = 164

# Registers (LoRa mode)
REG_FIFO = 0x00
REG_OP_MODE = 0x01
REG_FRF_MSB = 0x06
REG_FRF_MID = 0x07
REG_FRF_LSB = 0x08
REG_FIFO_ADDR_PTR = 0x0D
REG_FIFO_TX_BASE = 0x0E
REG_FIFO_RX_BASE = 0x0F
REG_FIFO_RX_CURRENT = 0x10
REG_IRQ_FLAGS = 0x12
REG_RX_NB_BYTES = 0x13
REG_PKT_SNR = 0x19
REG_PKT_RSSI = 0x1A
REG_RSSI = 0x1B
REG_MODEM_CONFIG1 = 0x1D
REG_MODEM_CONFIG2 = 0x1E
REG_PREAMBLE_MSB = 0x20
REG_PREAMBLE_LSB = 0x21
REG_PAYLOAD_LENGTH = 0x22
REG_FIFO_RX_BYTE_ADDR = 0x25
REG_MODEM_CONFIG3 = 0x26
REG_VERSION = 0x42

# Op modes (bits 0-2 of RegOpMode), bit 7 LongRangeMode, bit 3 LowFrequencyModeOn
SLEEP = 0
STDBY = 1
TX = 3
RXCONTINUOUS = 5
RXSINGLE = 6
LONG_RANGE = 0x80

IRQ_RX_DONE = 0x40
IRQ_CRC_ERROR = 0x20
IRQ_VALID_HEADER = 0x10
IRQ_TX_DONE = 0x08

# Reset values (SX1276 datasheet, table 41) of the registers this model gives meaning to.
RESET = {REG_OP_MODE: 0x09, REG_FRF_MSB: 0x6C, REG_FRF_MID: 0x80, REG_FRF_LSB: 0x00,
         0x09: 0x4F, 0x0A: 0x09, 0x0B: 0x2B, 0x0C: 0x20, REG_FIFO_TX_BASE: 0x80,
         REG_MODEM_CONFIG1: 0x72, REG_MODEM_CONFIG2: 0x70, 0x1F: 0x64, REG_PREAMBLE_LSB: 0x08,
         REG_PAYLOAD_LENGTH: 0x01, 0x23: 0xFF, REG_MODEM_CONFIG3: 0x04, 0x31: 0xC3,
         0x37: 0x0A, REG_VERSION: VERSION, 0x4D: 0x84}


class SX127x:
    def __init__(self, clock, on_transmit=None, noise_dbm=None):
        self.clock = clock
        self.on_transmit = on_transmit
        self.noise_dbm = noise_dbm
        self.regs = bytearray(128)
        self.fifo = bytearray(256)
        self.selected = False
        self.crc_errors = 0  # packets received with a bad payload CRC
        self.transmitted = []  # (start, packet bytes, modem dict), newest last; bounded
        self._addr = None
        self._write = False
        self._pending = []  # (start, end, packet, modem, rssi, snr, crc_ok)
        self._rx_since = None  # clock time the modem entered receive mode (None: not)
        self._rx_spans = []  # closed receive spans (start, end)
        self._rx_ptr = 0
        self._tx_until = None
        self._rst_low = False
        self.reset()

    # -- pins -----------------------------------------------------------------------
    def reset(self):
        """Power-on / RST pulse: every register to its reset value, modem idle."""
        for i in range(len(self.regs)):
            self.regs[i] = 0
        for k in RESET:
            self.regs[k] = RESET[k]
        for i in range(len(self.fifo)):
            self.fifo[i] = 0
        self._rx_since = None
        self._tx_until = None

    def cs(self, level):
        """Chip select changed (active low): a low level starts a new SPI transaction."""
        self.selected = not level
        self._addr = None

    def rst(self, level):
        if not level:
            self._rst_low = True
        elif self._rst_low:
            self._rst_low = False
            self.reset()

    # -- SPI --------------------------------------------------------------------------
    def spi_exchange(self, data):
        """Full-duplex transfer of ``data`` (MOSI) while selected; returns the MISO bytes.
        The first byte of a transaction is the address (bit 7 set = write); registers
        other than the FIFO auto-increment for burst access. Unselected: reads 0x00."""
        out = bytearray(len(data))
        if not self.selected or self._rst_low:
            return out
        self._update()
        for i in range(len(data)):
            b = data[i]
            if self._addr is None:
                self._addr = b & 0x7F
                self._write = bool(b & 0x80)
                continue
            if self._write:
                self._write_reg(self._addr, b)
            else:
                out[i] = self._read_reg(self._addr)
            if self._addr != REG_FIFO:
                self._addr = (self._addr + 1) & 0x7F
        return out

    # -- registers -----------------------------------------------------------------
    def mode(self):
        return self.regs[REG_OP_MODE] & 0x07

    def lora(self):
        return bool(self.regs[REG_OP_MODE] & LONG_RANGE)

    def _read_reg(self, a):
        if a == REG_FIFO:
            if self.mode() == SLEEP:
                return 0
            p = self.regs[REG_FIFO_ADDR_PTR]
            self.regs[REG_FIFO_ADDR_PTR] = (p + 1) & 0xFF
            return self.fifo[p]
        if a == REG_RSSI:
            noise = self.noise_dbm() if self.noise_dbm is not None else -120.0
            return _clamp(int(round(noise)) + self._rssi_offset())
        return self.regs[a]

    def _write_reg(self, a, v):
        if a == REG_FIFO:
            if self.mode() == SLEEP:
                return  # the FIFO is not accessible in sleep mode
            p = self.regs[REG_FIFO_ADDR_PTR]
            self.fifo[p] = v
            self.regs[REG_FIFO_ADDR_PTR] = (p + 1) & 0xFF
        elif a == REG_OP_MODE:
            self._set_op_mode(v)
        elif a == REG_IRQ_FLAGS:
            self.regs[a] &= ~v & 0xFF  # write 1 to clear
        elif a in (REG_VERSION, REG_RX_NB_BYTES, REG_FIFO_RX_CURRENT, REG_PKT_SNR,
                   REG_PKT_RSSI, REG_RSSI, REG_FIFO_RX_BYTE_ADDR):
            return  # read-only
        else:
            self.regs[a] = v

    def _set_op_mode(self, v):
        old = self.regs[REG_OP_MODE]
        if (old & 0x07) != SLEEP:  # LongRangeMode can only change in sleep mode
            v = (v & ~LONG_RANGE) | (old & LONG_RANGE)
        new_mode = v & 0x07
        now = self.clock()
        rx = (RXCONTINUOUS, RXSINGLE)
        same = (v & (LONG_RANGE | 0x07)) == (old & (LONG_RANGE | 0x07))
        if same and new_mode in rx:  # re-writing the receive mode does not restart it
            self.regs[REG_OP_MODE] = v & 0xFF
            return
        self._end_rx(now)
        self.regs[REG_OP_MODE] = v & 0xFF
        if new_mode == SLEEP:
            for i in range(len(self.fifo)):
                self.fifo[i] = 0
            self._tx_until = None
        if not v & LONG_RANGE:
            self._tx_until = None
            return  # FSK/OOK mode: nothing of LoRa happens
        if new_mode in rx:
            self._rx_since = now
            if (old & 0x07) not in rx:
                self._rx_ptr = self.regs[REG_FIFO_RX_BASE]
        elif new_mode == TX and (old & 0x07) != TX:
            self._start_tx(now)

    def modem(self):
        """The modulation the registers set up (what a packet is sent and heard with)."""
        c1 = self.regs[REG_MODEM_CONFIG1]
        c2 = self.regs[REG_MODEM_CONFIG2]
        frf = (self.regs[REG_FRF_MSB] << 16) | (self.regs[REG_FRF_MID] << 8) \
            | self.regs[REG_FRF_LSB]
        bw_id = c1 >> 4
        return {"frequency_mhz": round(frf * FSTEP / 1e6, 3),
                "bw_hz": BANDWIDTHS[bw_id] if bw_id < len(BANDWIDTHS) else 500000,
                "cr": ((c1 >> 1) & 0x07) + 4, "implicit_header": bool(c1 & 1),
                "sf": c2 >> 4, "crc": bool(c2 & 0x04),
                "preamble": (self.regs[REG_PREAMBLE_MSB] << 8) | self.regs[REG_PREAMBLE_LSB],
                "low_dr_opt": bool(self.regs[REG_MODEM_CONFIG3] & 0x08)}

    def _rssi_offset(self):
        return LF_RSSI_OFFSET if self.regs[REG_OP_MODE] & 0x08 else HF_RSSI_OFFSET

    # -- transmit ---------------------------------------------------------------------
    def _start_tx(self, now):
        n = self.regs[REG_PAYLOAD_LENGTH]
        base = self.regs[REG_FIFO_TX_BASE]
        packet = bytes(self.fifo[(base + i) & 0xFF] for i in range(n))
        m = self.modem()
        self.transmitted.append((now, packet, m))
        if len(self.transmitted) > 200:
            self.transmitted.pop(0)
        dur = 0.0
        if self.on_transmit is not None:
            dur = self.on_transmit(self, packet, m)
        self._tx_until = now + dur

    # -- receive ----------------------------------------------------------------------
    def deliver(self, packet, start, end, modem, rssi, snr, crc_ok=True):
        """A packet on the air (already known to match this chip's frequency, SF and
        bandwidth when it started); it lands in the FIFO only if the modem is receiving
        from before ``start`` until ``end``."""
        self._pending.append((start, end, bytes(packet), modem, rssi, snr, crc_ok))

    def listening(self):
        return self.lora() and self.mode() in (RXCONTINUOUS, RXSINGLE)

    def _end_rx(self, now):
        self._settle(now)
        if self._rx_since is not None:
            self._rx_spans.append((self._rx_since, now))
            self._rx_since = None
            if len(self._rx_spans) > 32:
                self._rx_spans.pop(0)

    def _heard(self, start, end):
        if self._rx_since is not None and self._rx_since <= start:
            return True
        for a, b in self._rx_spans:
            if a <= start and b >= end:
                return True
        return False

    def _update(self):
        now = self.clock()
        if self._tx_until is not None and now >= self._tx_until and self.mode() == TX:
            self._tx_until = None
            self.regs[REG_IRQ_FLAGS] |= IRQ_TX_DONE
            self.regs[REG_OP_MODE] = (self.regs[REG_OP_MODE] & ~0x07) | STDBY
        self._settle(now)

    def _settle(self, now):
        keep = []
        for p in self._pending:
            start, end, packet, modem, rssi, snr, crc_ok = p
            if end > now:
                keep.append(p)
            elif self._heard(start, end):  # else: the modem missed part of it
                self._receive(packet, rssi, snr, crc_ok)
        self._pending = keep

    def _receive(self, packet, rssi, snr, crc_ok):
        at = self._rx_ptr
        for i in range(len(packet)):
            self.fifo[(at + i) & 0xFF] = packet[i]
        self._rx_ptr = (at + len(packet)) & 0xFF
        r = self.regs
        r[REG_FIFO_RX_CURRENT] = at
        r[REG_FIFO_RX_BYTE_ADDR] = self._rx_ptr
        r[REG_RX_NB_BYTES] = len(packet)
        r[REG_PKT_SNR] = int(round(snr * 4)) & 0xFF
        r[REG_PKT_RSSI] = _clamp(int(round(rssi)) + self._rssi_offset())
        flags = IRQ_RX_DONE | IRQ_VALID_HEADER
        if not crc_ok:
            flags |= IRQ_CRC_ERROR
            self.crc_errors += 1
        r[REG_IRQ_FLAGS] |= flags
        if self.mode() == RXSINGLE:
            r[REG_OP_MODE] = (r[REG_OP_MODE] & ~0x07) | STDBY
            self._rx_spans.append((self._rx_since, self.clock()))
            self._rx_since = None


def _clamp(v):
    return 0 if v < 0 else (255 if v > 255 else v)


class SPIBus:
    """``busio.SPI`` as the firmware sees it, with chips on it. ``attach(chip, cs_pin)``
    ties a chip to the pin object whose level selects it (the glue's DigitalInOut drives
    that pin; the simulator calls ``chip.cs(level)`` on every change)."""

    def __init__(self):
        self.chips = []
        self._locked = False
        self.frequency = 0

    def attach(self, chip):
        self.chips.append(chip)

    def try_lock(self):
        if self._locked:
            return False
        self._locked = True
        return True

    def unlock(self):
        self._locked = False

    def configure(self, baudrate=100000, polarity=0, phase=0, bits=8):
        self.frequency = baudrate

    def _exchange(self, data):
        got = bytearray(len(data))
        for c in self.chips:
            if c.selected:
                got = c.spi_exchange(data)
        return got

    def write(self, buffer, start=0, end=None):
        self._exchange(bytes(buffer[start:len(buffer) if end is None else end]))

    def readinto(self, buffer, start=0, end=None, write_value=0):
        end = len(buffer) if end is None else end
        got = self._exchange(bytes([write_value & 0xFF]) * (end - start))
        for i in range(end - start):
            buffer[start + i] = got[i]

    def write_readinto(self, out_buffer, in_buffer, out_start=0, out_end=None, in_start=0,
                       in_end=None):
        out_end = len(out_buffer) if out_end is None else out_end
        in_end = len(in_buffer) if in_end is None else in_end
        got = self._exchange(bytes(out_buffer[out_start:out_end]))
        for i in range(in_end - in_start):
            in_buffer[in_start + i] = got[i]

    def deinit(self):
        pass
