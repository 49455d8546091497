"""LoRa path over an ``adafruit_rfm.rfm9x.RFM9x`` radio (the HAL hands one in, with
``radiohead = False``: what ``send`` gets is the whole packet on air, 19 bytes).

Uses only: send(data, keep_listening=), receive(timeout=), frequency_mhz,
spreading_factor, signal_bandwidth, coding_rate, tx_power, enable_crc, last_rssi,
last_snr. RadioHead's own ACKs are never used: only signed downlinks count. Airtime for
the dwell and duty-cycle checks is that of ``AIR_LEN`` bytes at the configured bandwidth.
"""

from panicbutton import policy
from panicbutton.settings import AIR_LEN
from panicproto import airtime


class LoraPath:
    name = "lora"

    def __init__(self, radio, settings):
        self.radio = radio
        self.region = settings.region
        self.bw = settings.bandwidth_hz
        self.ladder = policy.sf_ladder(settings.region, settings.sf, settings.sf_max, AIR_LEN,
                                       self.bw)
        self.duty = airtime.DutyCycle(settings.region.duty) if settings.region.duty else None
        radio.frequency_mhz = settings.frequency_mhz
        radio.signal_bandwidth = self.bw
        radio.coding_rate = 5
        radio.spreading_factor = self.ladder[0]
        radio.tx_power = settings.tx_power
        radio.enable_crc = True
        self.last_sf = self.ladder[0]
        self.rx = None  # (RSSI dBm, SNR dB, SF) of the last packet poll() returned

    def send(self, frame, kind, attempt, now):
        """(True, sf) when transmitted, (False, wait_s) when the duty budget is spent,
        (False, 0) when the radio reported a failure."""
        sf, x = policy.choose_sf(self.ladder, attempt, kind, self.duty, now, AIR_LEN, self.bw)
        if sf is None:
            return False, x
        self.radio.spreading_factor = sf
        self.last_sf = sf
        ok = self.radio.send(frame, keep_listening=True)
        if self.duty is not None:
            self.duty.record(now, x)
        if not ok:
            return False, 0
        return True, sf

    def poll(self, timeout_s):
        """One received packet (bytes, the whole packet) or None; its RSSI, SNR and SF
        (as the radio library measured them; the radio listens on the SF it last sent on)
        in ``rx``."""
        pkt = self.radio.receive(timeout=timeout_s)
        if pkt is None:
            return None
        self.rx = (self.radio.last_rssi, self.radio.last_snr, self.last_sf)
        return bytes(pkt)
