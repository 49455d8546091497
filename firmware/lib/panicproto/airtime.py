"""LoRa time on air (Semtech SX127x datasheet / AN1200.13 formula) and regional limits.

Times are in milliseconds, bandwidth in Hz, coding rate as the denominator of 4/x (5-8).
"""

import math


def symbol_ms(sf, bw_hz=125000):
    """Duration of one LoRa symbol: 2**SF / BW."""
    return (1 << sf) * 1000.0 / bw_hz


def time_on_air_ms(payload_len, sf, bw_hz=125000, cr=5, preamble=8, crc=True,
                   explicit_header=True, low_dr_opt=None):
    """Airtime of one packet. ``low_dr_opt`` None means automatic: on when a symbol lasts
    16 ms or more (SF11/SF12 at 125 kHz), as the radio requires."""
    if not 6 <= sf <= 12:
        raise ValueError("SF must be 6-12")
    if not 5 <= cr <= 8:
        raise ValueError("coding rate is 4/5 to 4/8: pass 5-8")
    if not 0 <= payload_len <= 255:
        raise ValueError("payload is 0-255 bytes")
    ts = symbol_ms(sf, bw_hz)
    if low_dr_opt is None:
        low_dr_opt = ts >= 16.0
    de = 1 if low_dr_opt else 0
    ih = 0 if explicit_header else 1
    num = 8 * payload_len - 4 * sf + 28 + (16 if crc else 0) - 20 * ih
    den = 4 * (sf - 2 * de)
    n_payload = 8 + max(math.ceil(num / den) * cr, 0)
    return (preamble + 4.25) * ts + n_payload * ts


# The ``default_*`` radio settings of a Region are the one source of regional radio
# defaults: the gateway's [serial] section, the bridge firmware, the button's settings and
# `panictool provision` all start from them, so a fresh install agrees with itself
# (docs/protocol.md, "Radio defaults"). The same in every region today, so they are class
# attributes (no RAM per region on a board); a region that needs others sets its own.
class Region:
    """Regulatory limits that the sender must respect. ``dwell_ms`` None = no dwell limit;
    ``duty`` None = no duty-cycle limit (fraction of airtime per rolling hour)."""

    default_sf = 9
    default_bw_hz = 125000
    default_cr = 5  # coding rate 4/5
    default_tx_power = 14  # dBm

    def __init__(self, name, f_min_mhz, f_max_mhz, dwell_ms, duty, default_mhz, max_sf=12):
        self.name = name
        self.f_min_mhz = f_min_mhz
        self.f_max_mhz = f_max_mhz
        self.dwell_ms = dwell_ms
        self.duty = duty
        self.default_mhz = default_mhz
        self.max_sf = max_sf

    def allows(self, payload_len, sf, bw_hz=125000):
        """True when one packet at ``sf`` stays within the dwell-time limit."""
        if sf > self.max_sf:
            return False
        if self.dwell_ms is None:
            return True
        return time_on_air_ms(payload_len, sf, bw_hz) <= self.dwell_ms

    def slowest_sf(self, payload_len, bw_hz=125000):
        """Highest (longest-range) SF the region permits for this payload size."""
        for sf in range(self.max_sf, 6, -1):
            if self.allows(payload_len, sf, bw_hz):
                return sf
        raise ValueError("no spreading factor fits %s's dwell limit" % self.name)

    def check_frequency(self, mhz):
        return self.f_min_mhz <= mhz <= self.f_max_mhz


# Indonesia uses 920-923 MHz (AS923-2). Duty cycle: we budget a conservative 1 % per
# rolling hour everywhere a plan has one; docs/protocol.md gives the sources. Defaults in
# every region: SF9 at 125 kHz, CR 4/5 (a 19-byte uplink is 185 ms on air, well inside the
# 400 ms dwell limits) and 14 dBm, within every plan's power cap.
DEFAULT_REGION = "AS923-2"
REGIONS = {
    "AS923-2": Region("AS923-2", 920.0, 923.0, 400.0, 0.01, 921.4),
    "AS923": Region("AS923", 915.0, 928.0, 400.0, 0.01, 923.2),
    "EU868": Region("EU868", 863.0, 870.0, None, 0.01, 868.1),
    "US915": Region("US915", 902.0, 928.0, 400.0, None, 903.9, max_sf=10),
}


def region(name):
    """Region by name (case-insensitive); raises ValueError naming the known ones."""
    r = REGIONS.get(name.upper())
    if r is None:
        raise ValueError("unknown region %r; known: %s" % (name, ", ".join(sorted(REGIONS))))
    return r


class DutyCycle:
    """Airtime budget over a rolling window, kept as ``bins`` fixed buckets of used ms.

    Conservative by at most one bucket: airtime leaves the budget only once its whole
    bucket is older than the window. Times are seconds from any monotonic clock.
    """

    def __init__(self, duty, window_s=3600, bins=60):
        self.duty = duty
        self.window_s = window_s
        self.bin_s = window_s / bins
        self._used = [0.0] * bins
        self._stamp = [-0x3FFFFFFF] * bins  # matches no real slot

    def _index(self, now_s):
        slot = int(now_s // self.bin_s)
        i = slot % len(self._used)
        if self._stamp[i] != slot:
            self._stamp[i] = slot
            self._used[i] = 0.0
        return slot

    def used_ms(self, now_s):
        """Airtime counted against the window ending at ``now_s``."""
        slot = self._index(now_s)
        n = len(self._used)
        total = 0.0
        for i in range(n):
            if slot - n < self._stamp[i] <= slot:
                total += self._used[i]
        return total

    def budget_ms(self):
        return self.duty * self.window_s * 1000.0 if self.duty else float("inf")

    def can_send(self, now_s, airtime_ms):
        if not self.duty:
            return True
        return self.used_ms(now_s) + airtime_ms <= self.budget_ms()

    def record(self, now_s, airtime_ms):
        slot = self._index(now_s)
        self._used[slot % len(self._used)] += airtime_ms

    def wait_s(self, now_s, airtime_ms):
        """Seconds until ``airtime_ms`` fits the budget (0 when it fits now)."""
        if self.can_send(now_s, airtime_ms):
            return 0.0
        slot = self._index(now_s)
        n = len(self._used)
        need = self.used_ms(now_s) + airtime_ms - self.budget_ms()
        freed = 0.0
        for age in range(n - 1, -1, -1):  # oldest bucket first
            s = slot - age
            i = s % n
            if self._stamp[i] == s:
                freed += self._used[i]
                if freed >= need:
                    return (s + n) * self.bin_s - now_s
        return self.window_s
