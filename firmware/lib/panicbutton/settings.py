"""Non-secret settings from settings.toml (CircuitPython ``os.getenv``), checked up front.

CircuitPython's settings.toml holds strings and integers only, so frequencies are
strings ("921.4"). ``parse`` raises SettingsError naming the setting and the fix; the app
shows it on the console and as LED code 2, and keeps running (never a crash loop).
"""

from panicproto import airtime

KEYS = ("PB_REGION", "PB_FREQUENCY_MHZ", "PB_SF", "PB_SF_MAX", "PB_BANDWIDTH_HZ",
        "PB_TX_POWER", "PB_LORA", "PB_GATEWAY_URL", "PB_WIFI_SSID", "PB_WIFI_PASSWORD",
        "PB_SUPERVISION_S", "PB_ALARM_HOLD_MS", "PB_RX_WINDOW_MS", "PB_CANCEL",
        "PB_LOW_BATTERY_MV", "PB_BOARD", "PB_TAMPER")
BANDWIDTHS = (62500, 125000, 250000, 500000)
# Bytes on air per uplink: frames.UPLINK_LEN (inlined: importing frames costs RAM). The
# glue sends with adafruit_rfm and radiohead = False, so the frame is the whole packet.
AIR_LEN = 19


class SettingsError(ValueError):
    def __init__(self, key, message):
        super().__init__("%s: %s" % (key, message))
        self.key = key


def _int(raw, key, default, lo, hi):
    if raw is None or raw == "":
        return default
    if isinstance(raw, bool):
        raise SettingsError(key, "must be an integer")
    if isinstance(raw, str):
        try:
            raw = int(raw.strip())
        except ValueError:
            raise SettingsError(key, "must be an integer, got %r" % raw) from None
    if not isinstance(raw, int):
        raise SettingsError(key, "must be an integer")
    if not lo <= raw <= hi:
        raise SettingsError(key, "must be %d-%d, got %d" % (lo, hi, raw))
    return raw


def _str(raw, key):
    if raw is None:
        return ""
    if not isinstance(raw, str):
        raise SettingsError(key, "must be a quoted string")
    return raw.strip()


class Settings:
    """Checked settings; attribute names follow the PB_* keys in lower case."""

    def __init__(self):
        self.region = None
        self.frequency_mhz = 0.0
        self.sf = 9
        self.sf_max = 9
        self.bandwidth_hz = 125000
        self.tx_power = 14
        self.lora = True
        self.gateway_url = ""
        self.wifi_ssid = ""
        self.wifi_password = ""
        self.supervision_s = 3600
        self.alarm_hold_ms = 1500
        self.rx_window_ms = 3000
        self.cancel = False
        self.low_battery_mv = 3500
        self.board = ""
        self.tamper = False

    def public(self):
        """Settings for reports and logs (never the Wi-Fi password)."""
        return {
            "region": self.region.name if self.region else None,
            "frequency_mhz": self.frequency_mhz, "sf": self.sf, "sf_max": self.sf_max,
            "bandwidth_hz": self.bandwidth_hz, "tx_power": self.tx_power, "lora": self.lora,
            "gateway_url": self.gateway_url, "wifi_ssid": self.wifi_ssid,
            "supervision_s": self.supervision_s, "alarm_hold_ms": self.alarm_hold_ms,
            "rx_window_ms": self.rx_window_ms, "cancel": self.cancel,
            "low_battery_mv": self.low_battery_mv,
        }


def parse(raw):
    """Settings from a dict of PB_* values (str, int or None). Raises SettingsError."""
    s = Settings()
    region = _str(raw.get("PB_REGION"), "PB_REGION")
    if not region:
        raise SettingsError("PB_REGION", "missing; set e.g. PB_REGION = \"AS923-2\"")
    try:
        s.region = airtime.region(region)
    except ValueError as e:
        raise SettingsError("PB_REGION", str(e)) from None
    f = raw.get("PB_FREQUENCY_MHZ")
    if f is None or f == "":
        s.frequency_mhz = s.region.default_mhz
    else:
        try:
            s.frequency_mhz = float(f.strip() if isinstance(f, str) else f)
        except (ValueError, TypeError):
            raise SettingsError("PB_FREQUENCY_MHZ", "must be a number like \"921.4\"") from None
        if not s.region.check_frequency(s.frequency_mhz):
            raise SettingsError("PB_FREQUENCY_MHZ", "%s MHz is outside %s (%s-%s MHz)" % (
                s.frequency_mhz, s.region.name, s.region.f_min_mhz, s.region.f_max_mhz))
    s.bandwidth_hz = _int(raw.get("PB_BANDWIDTH_HZ"), "PB_BANDWIDTH_HZ", 125000, 7800, 500000)
    if s.bandwidth_hz not in BANDWIDTHS:
        raise SettingsError("PB_BANDWIDTH_HZ", "must be one of %s" % (BANDWIDTHS,))
    try:
        slowest = s.region.slowest_sf(AIR_LEN, s.bandwidth_hz)
    except ValueError as e:
        raise SettingsError("PB_BANDWIDTH_HZ", str(e)) from None
    s.sf = _int(raw.get("PB_SF"), "PB_SF", min(s.region.default_sf, slowest), 7, 12)
    if s.sf > slowest:
        raise SettingsError("PB_SF", "SF%d exceeds %s's dwell limit; use SF%d or lower" % (
            s.sf, s.region.name, slowest))
    s.sf_max = _int(raw.get("PB_SF_MAX"), "PB_SF_MAX", slowest, 7, 12)
    if s.sf_max < s.sf:
        raise SettingsError("PB_SF_MAX", "must be >= PB_SF (%d)" % s.sf)
    if s.sf_max > slowest:
        raise SettingsError("PB_SF_MAX", "SF%d exceeds %s's dwell limit; use SF%d or lower"
                            % (s.sf_max, s.region.name, slowest))
    s.tx_power = _int(raw.get("PB_TX_POWER"), "PB_TX_POWER", 14, 5, 23)
    s.lora = bool(_int(raw.get("PB_LORA"), "PB_LORA", 1, 0, 1))
    s.gateway_url = _str(raw.get("PB_GATEWAY_URL"), "PB_GATEWAY_URL").rstrip("/")
    if s.gateway_url and not (s.gateway_url.startswith("http://")
                              or s.gateway_url.startswith("https://")):
        raise SettingsError("PB_GATEWAY_URL", "must start with http:// or https://")
    s.wifi_ssid = _str(raw.get("PB_WIFI_SSID"), "PB_WIFI_SSID")
    s.wifi_password = _str(raw.get("PB_WIFI_PASSWORD"), "PB_WIFI_PASSWORD")
    if s.wifi_ssid and not s.gateway_url:
        raise SettingsError("PB_GATEWAY_URL", "required when PB_WIFI_SSID is set")
    if s.wifi_password and len(s.wifi_password) < 8:
        raise SettingsError("PB_WIFI_PASSWORD", "WPA passwords have 8-63 characters")
    s.supervision_s = _int(raw.get("PB_SUPERVISION_S"), "PB_SUPERVISION_S", 3600, 60, 86400)
    s.alarm_hold_ms = _int(raw.get("PB_ALARM_HOLD_MS"), "PB_ALARM_HOLD_MS", 1500, 500, 10000)
    s.rx_window_ms = _int(raw.get("PB_RX_WINDOW_MS"), "PB_RX_WINDOW_MS", 3000, 200, 10000)
    s.cancel = bool(_int(raw.get("PB_CANCEL"), "PB_CANCEL", 0, 0, 1))
    s.low_battery_mv = _int(raw.get("PB_LOW_BATTERY_MV"), "PB_LOW_BATTERY_MV", 3500, 2500, 4500)
    s.board = _str(raw.get("PB_BOARD"), "PB_BOARD")
    s.tamper = bool(_int(raw.get("PB_TAMPER"), "PB_TAMPER", 0, 0, 1))
    return s
