"""A virtual LoRa channel: radios on the same frequency, SF and bandwidth hear each other.

Airtime comes from panicproto.airtime (the payload includes the 4-byte RadioHead header
adafruit_rfm9x adds). A receiver gets a packet only if it was listening for the whole
packet, as a real SX127x would. Loss, duplication, latency and CRC corruption are
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

    def airtime_s(self, nbytes: int, sf: int, bw_hz: int) -> float:
        return airtime.time_on_air_ms(nbytes, sf, bw_hz) / 1000.0

    def transmit(self, sender, data: bytes, frequency_mhz: float, sf: int, bw_hz: int,
                 start: float | None = None) -> float:
        """Put ``data`` (as sent over the air, header included) on the channel; returns
        its airtime in seconds."""
        t0 = self.clock.now() if start is None else start
        dur = self.airtime_s(len(data), sf, bw_hz)
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

    def inject(self, payload: bytes, frequency_mhz: float, sf: int, bw_hz: int = 125000,
               header: bool = True) -> None:
        """Transmit raw ``payload`` from nowhere (a RadioHead header is added unless
        ``header`` is False), e.g. garbage or a forged downlink."""
        data = (b"\xff\xff\x00\x00" + bytes(payload)) if header else bytes(payload)
        self.transmit("injector", data, frequency_mhz, sf, bw_hz)
