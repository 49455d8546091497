"""Radio settings of the bridge: defaults from settings.toml, changes by link CONFIG.

Keys: frequency_mhz, sf, bw_hz, cr, tx_power. ``check`` validates a whole change before
any of it is applied, so a bad CONFIG never leaves the radio half-configured.
"""

from panicproto import airtime

BANDWIDTHS = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)
_R = airtime.region(airtime.DEFAULT_REGION)  # the gateway's defaults too (one source)
DEFAULTS = {"frequency_mhz": _R.default_mhz, "sf": _R.default_sf, "bw_hz": _R.default_bw_hz,
            "cr": _R.default_cr, "tx_power": _R.default_tx_power}
KEYS = tuple(sorted(DEFAULTS))


def _num(v):
    return (isinstance(v, int) or isinstance(v, float)) and not isinstance(v, bool)


def check(change):
    """A validated copy of ``change`` (dict); raises ValueError naming the bad key."""
    if not isinstance(change, dict):
        raise ValueError("CONFIG must be a JSON object")
    out = {}
    for k in change:
        v = change[k]
        if k not in DEFAULTS:
            raise ValueError("unknown key %r; known: %s" % (k, ", ".join(KEYS)))
        if not _num(v):
            raise ValueError("%s must be a number" % k)
        if k == "frequency_mhz":
            if not 240.0 <= v <= 960.0:
                raise ValueError("frequency_mhz must be 240-960 (RFM95)")
            out[k] = float(v)
            continue
        if v != int(v):
            raise ValueError("%s must be an integer" % k)
        v = int(v)
        if k == "sf" and not 6 <= v <= 12:
            raise ValueError("sf must be 6-12")
        if k == "bw_hz" and v not in BANDWIDTHS:
            raise ValueError("bw_hz must be one of %s" % (BANDWIDTHS,))
        if k == "cr" and not 5 <= v <= 8:
            raise ValueError("cr must be 5-8 (4/5 to 4/8)")
        if k == "tx_power" and not 5 <= v <= 23:
            raise ValueError("tx_power must be 5-23 dBm")
        out[k] = v
    return out


def from_settings(raw):
    """Start-up radio settings from PB_* values (settings.toml); raises ValueError."""
    change = {}
    names = (("PB_FREQUENCY_MHZ", "frequency_mhz"), ("PB_SF", "sf"),
             ("PB_BANDWIDTH_HZ", "bw_hz"), ("PB_CODING_RATE", "cr"), ("PB_TX_POWER", "tx_power"))
    for env, key in names:
        v = raw.get(env)
        if v is None or v == "":
            continue
        if isinstance(v, str):
            try:
                v = float(v) if key == "frequency_mhz" else int(v)
            except ValueError:
                raise ValueError("%s: %r is not a number" % (env, v)) from None
        change[key] = v
    cfg = dict(DEFAULTS)
    try:
        cfg.update(check(change))
    except ValueError as e:
        raise ValueError("settings.toml: %s" % e) from None
    return cfg
