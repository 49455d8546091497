"""A virtual LoRa channel: radios on the same frequency, SF and bandwidth hear each other.

What travels is the packet exactly as the sender's chip put it on air (the firmware sends
with ``adafruit_rfm`` and ``radiohead = False``: a 19-byte uplink, an 18-byte downlink,
no header). Airtime comes from panicproto.airtime with the sender's modulation (SF,
bandwidth, coding rate, preamble, CRC, header mode, low-data-rate optimisation). A receiver
gets a packet only if its modem was receiving for the whole packet, as a real SX127x.
``rssi``/``snr`` are what a receiving chip reports for a packet (its packet RSSI and SNR
registers, as the radio library reads them). Loss, duplication, latency and CRC corruption are
configurable, and ``inject`` puts arbitrary bytes (garbage, forgeries) on the air.
"""

import random
import threading
from dataclasses import dataclass, field

from panicproto import airtime


@dataclass
class Transmission:
    sender: str
    data: bytes
    start: float
    end: float
    frequency_mhz: float
    sf: int
    bw_hz: int
    crc_ok: bool = True


@dataclass
class AirStats:
    sent: int = 0
    delivered: int = 0
    lost: int = 0
    duplicated: int = 0
    corrupted: int = 0
    log: list = field(default_factory=list)


class Air:
    def __init__(self, clock, loss: float = 0.0, duplicate: float = 0.0, latency_s: float = 0.0,
                 corrupt: float = 0.0, rssi: float = -90.0, snr: float = 7.0,
                 noise_dbm: float = -120.0, seed: int | None = None) -> None:
        self.clock = clock
        self.loss = loss
        self.duplicate = duplicate
        self.latency_s = latency_s
        self.corrupt = corrupt
        self.rssi = rssi
        self.snr = snr
        self.noise_dbm = noise_dbm
        self.rng = random.Random(seed)
        self.radios: list = []
        self.stats = AirStats()
        self.lock = threading.Lock()

    def attach(self, radio) -> None:
        with self.lock:
            self.radios.append(radio)

    def detach(self, radio) -> None:
        with self.lock:
            if radio in self.radios:
                self.radios.remove(radio)

    def airtime_s(self, nbytes: int, sf: int, bw_hz: int, modem: dict | None = None) -> float:
        if modem is None:
            return airtime.time_on_air_ms(nbytes, sf, bw_hz) / 1000.0
        return airtime.time_on_air_ms(nbytes, sf, bw_hz, modem["cr"], modem["preamble"],
                                      modem["crc"], not modem["implicit_header"],
                                      modem["low_dr_opt"]) / 1000.0

    def transmit(self, sender, data: bytes, frequency_mhz: float, sf: int, bw_hz: int,
                 start: float | None = None) -> float:
        """Put ``data`` (the whole packet as on air) on the channel; returns its airtime
        in seconds, with the sender's full modulation when it has one (``sender.modem``:
        the chip's coding rate, preamble, CRC, header mode, low-data-rate optimisation)."""
        t0 = self.clock.now() if start is None else start
        dur = self.airtime_s(len(data), sf, bw_hz, getattr(sender, "modem", None))
        self.stats.sent += 1
        self.stats.log.append((t0, getattr(sender, "name", str(sender)), bytes(data), sf))
        del self.stats.log[:-200]
        with self.lock:
            receivers = [r for r in self.radios if r is not sender]
        for r in receivers:
            if r.frequency_mhz != frequency_mhz or r.spreading_factor != sf \
                    or r.signal_bandwidth != bw_hz:
                continue
            copies = 1
            if self.rng.random() < self.duplicate:
                copies = 2
                self.stats.duplicated += 1
            for k in range(copies):
                if self.rng.random() < self.loss:
                    self.stats.lost += 1
                    continue
                ok = self.rng.random() >= self.corrupt
                if not ok:
                    self.stats.corrupted += 1
                start = t0 + self.latency_s + k * (dur + 0.01)
                r.deliver(Transmission(getattr(sender, "name", "?"), bytes(data), start,
                                       start + dur, frequency_mhz, sf, bw_hz, ok))
                self.stats.delivered += 1
        return dur

    def inject(self, payload: bytes, frequency_mhz: float, sf: int,
               bw_hz: int = 125000) -> None:
        """Transmit raw ``payload`` as a whole packet from nowhere, e.g. garbage or a forged
        downlink."""
        self.transmit("injector", bytes(payload), frequency_mhz, sf, bw_hz)
