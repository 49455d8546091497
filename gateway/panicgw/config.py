"""Gateway configuration: TOML (tomllib) over embedded defaults, validated key by key.

Every key has a type, a default and a check; an error names the section and key
(``[http] port: ...``) and unknown keys are errors too (a typo must not silently fall back
to a default on a device that guards shops). Defaults need nothing installed: SQLite in
``./panicgw-data``, HTTP ingest on port 8080, no broker, no dispatch endpoint.
"""

from __future__ import annotations

import difflib
import math
import tomllib
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panicgw.forward.sia.settings import ReceiverSettings as SiaReceiver
from panicgw.forward.sia.settings import SiaConfigError, from_table
from panicgw.urls import redact_url, url_secrets
from panicproto import airtime, frames

__all__ = ["SCHEMA", "Config", "ConfigError", "SiaReceiver", "from_dict", "load", "redact_url",
           "url_secrets"]


class ConfigError(ValueError):
    """Invalid configuration; the message names the file, section and key."""


Check = Callable[[Any], str | None]  # returns an error text, or None when fine


def _int(lo: int, hi: int) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
            return f"must be an integer {lo}..{hi}"
        return None
    return check


def _num(lo: float, hi: float) -> Check:
    def check(v: Any) -> str | None:
        if (not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v)
                or not lo <= v <= hi):
            return f"must be a number {lo}..{hi}"
        return None
    return check


def _str(empty_ok: bool = True) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or (not empty_ok and not v.strip()):
            return "must be a non-empty string" if not empty_ok else "must be a string"
        return None
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return check


def _region(v: Any) -> str | None:
    if not isinstance(v, str) or v.upper() not in airtime.REGIONS:
        return f"must be one of {', '.join(sorted(airtime.REGIONS))}"
    return None


# LoRa bandwidths the SX127x offers (and the bridge accepts in CONFIG).
BANDWIDTHS = (7800, 10400, 15600, 20800, 31250, 41700, 62500, 125000, 250000, 500000)

# [serial] radio key -> the Region attribute its default comes from.
RADIO_DEFAULTS = {"frequency_mhz": "default_mhz", "spreading_factor": "default_sf",
                  "bandwidth_hz": "default_bw_hz", "coding_rate": "default_cr",
                  "tx_power_dbm": "default_tx_power"}


def _bandwidth(v: Any) -> str | None:
    if isinstance(v, bool) or v not in BANDWIDTHS:
        return f"must be one of {', '.join(str(b) for b in BANDWIDTHS)} (Hz)"
    return None


def _url(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    if v and not v.startswith(("https://", "http://")):
        return "must be an https:// URL (or empty to disable forwarding)"
    if v and not urllib.parse.urlsplit(v).hostname:
        return "must name a host, e.g. https://dispatch.example.go.id/v1/events"
    return None


# Keys holding a file path: a relative one is relative to the config file's directory
# (`[serial] port` too, unless it is "auto").
PATH_KEYS = (("gateway", "data_dir"), ("serial", "port"), ("http", "tls_cert"),
             ("http", "tls_key"), ("dispatch", "ca_file"), ("dispatch", "client_cert"),
             ("dispatch", "client_key"))

# section -> key -> (default, check). Keep docs/gateway.md and deploy/gateway.toml.example
# in step with this table.
SCHEMA: dict[str, dict[str, tuple[Any, Check]]] = {
    "gateway": {
        "id": ("gw-1", _str(empty_ok=False)),
        "data_dir": ("panicgw-data", _str(empty_ok=False)),
        "log_level": ("info", _one_of("debug", "info", "warning", "error")),
        "log_format": ("json", _one_of("json", "text")),
    },
    "pipeline": {
        "replay_window": (64, _int(8, 1024)),
        "incident_window_s": (300, _int(0, 86400)),
        "batch_max": (256, _int(1, 10000)),
        "linger_ms": (10, _int(0, 100)),
        "heartbeat_retention_days": (30, _int(1, 3650)),
        "reject_log_per_min": (20, _int(0, 10000)),
    },
    "serial": {
        "enabled": (True, _bool),
        "port": ("auto", _str(empty_ok=False)),
        "baudrate": (115200, _int(1200, 4000000)),
        "usb_vid": (0x239A, _int(0, 0xFFFF)),
        # Radio: None = the region's default (panicproto.airtime.Region, the one source of
        # regional defaults; bridge, button and panictool provision start from it too).
        "region": (airtime.DEFAULT_REGION, _region),
        "frequency_mhz": (None, _num(137.0, 1020.0)),
        "spreading_factor": (None, _int(7, 12)),
        "bandwidth_hz": (None, _bandwidth),
        "coding_rate": (None, _int(5, 8)),
        "tx_power_dbm": (None, _int(5, 23)),
        "ping_interval_s": (5.0, _num(0.2, 3600.0)),
        "reconnect_max_s": (10.0, _num(0.1, 600.0)),
        "missing_trouble_s": (300, _int(5, 86400)),
    },
    "http": {
        "enabled": (True, _bool),
        "host": ("0.0.0.0", _str(empty_ok=False)),
        "port": (8080, _int(0, 65535)),
        "tls_cert": ("", _str()),
        "tls_key": ("", _str()),
        "max_body": (64, _int(19, 65536)),
        "rate_per_s": (5.0, _num(0.01, 100000.0)),
        "rate_burst": (20, _int(1, 100000)),
        "client_timeout_s": (10.0, _num(0.1, 600.0)),
        "max_clients": (2000, _int(1, 1000000)),
    },
    "status": {
        "enabled": (True, _bool),
        "host": ("127.0.0.1", _str(empty_ok=False)),
        "port": (8765, _int(0, 65535)),
    },
    "dispatch": {
        "url": ("", _url),
        "allow_insecure_http": (False, _bool),
        "token": ("", _str()),
        "secret": ("", _str()),
        "ca_file": ("", _str()),
        "client_cert": ("", _str()),
        "client_key": ("", _str()),
        "timeout_s": (10.0, _num(0.1, 300.0)),
        "alarm_probe_s": (2.5, _num(0.5, 60.0)),
        "checkin_interval_s": (3600, _int(10, 7 * 86400)),
    },
    "mqtt": {
        "enabled": (False, _bool),
        "host": ("127.0.0.1", _str(empty_ok=False)),
        "port": (1883, _int(1, 65535)),
        "username": ("", _str()),
        "password": ("", _str()),
        "tls": (False, _bool),
    },
}


@dataclass
class Config:
    """Validated settings: ``cfg.section("http")["port"]`` or ``cfg.http["port"]``."""

    values: dict[str, dict[str, Any]]
    source: str = "<defaults>"
    sia: list[SiaReceiver] = field(default_factory=list)  # [[sia]]: DC-09 receivers

    def section(self, name: str) -> dict[str, Any]:
        return self.values[name]

    def __getattr__(self, name: str) -> dict[str, Any]:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        return Path(self.values["gateway"]["data_dir"])

    @property
    def db_path(self) -> Path:
        return self.data_dir / "gateway.db"

    def redacted(self) -> dict[str, dict[str, Any]]:
        """Values safe to print (tokens, passwords, secrets and URL userinfo replaced)."""
        out = {s: dict(v) for s, v in self.values.items()}
        for sec, key in (("dispatch", "token"), ("dispatch", "secret"), ("mqtt", "password")):
            if out[sec][key]:
                out[sec][key] = "***"
        out["dispatch"]["url"] = redact_url(out["dispatch"]["url"])
        out["sia"] = [_shown_receiver(r) for r in self.sia]  # type: ignore[assignment]
        return out


def _shown_receiver(r: SiaReceiver) -> dict[str, Any]:
    """One ``[[sia]]`` receiver as ``run --check`` prints it: the AES key never shown."""
    return {"name": r.name, "primary": str(r.primary),
            "backup": str(r.backup) if r.backup else "", "receiver": r.receiver,
            "line": r.line, "account": r.account, "key": "***" if r.encrypted else "",
            "format": r.format, "xdata": list(r.xdata), "link_test_s": r.link_test_s,
            "ack_timeout_s": r.ack_timeout_s, "tries": r.tries}


def _sia_receivers(body: Any, source: str) -> list[SiaReceiver]:
    """``[[sia]]``: one table per receiving centre, each checked by forward.sia.settings;
    names must differ (they name the route in the outbox, logs and diag)."""
    if not isinstance(body, list):
        raise ConfigError(f"{source}: [sia] must be written [[sia]] (double brackets): one "
                          "table per receiving centre (docs/sia.md section 4)")
    out: list[SiaReceiver] = []
    for n, table in enumerate(body, 1):
        try:
            r = from_table(table, f"{source}: [[sia]] #{n}")
        except SiaConfigError as e:
            raise ConfigError(str(e)) from None
        if any(o.name == r.name for o in out):
            raise ConfigError(
                f"{source}: [[sia]] #{n} name {r.name!r} is used by another [[sia]] table: give "
                "each receiver its own name (it names its delivery state in the outbox)")
        out.append(r)
    return out


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def from_dict(doc: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None) -> Config:
    """Validate a parsed TOML document over the defaults; raises ConfigError."""
    values = {s: {k: d for k, (d, _) in keys.items()} for s, keys in SCHEMA.items()}
    sia: list[SiaReceiver] = []
    for section, body in doc.items():
        if section == "sia":
            sia = _sia_receivers(body, source)
            continue
        if section not in SCHEMA:
            raise ConfigError(
                f"{source}: unknown section [{section}]"
                f"{_suggest(section, [*SCHEMA, 'sia'])}"
            )
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in body.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                raise ConfigError(
                    f"{source}: [{section}] unknown key {key!r}"
                    f"{_suggest(key, list(SCHEMA[section]))}"
                )
            default, check = spec
            if isinstance(default, float) and isinstance(value, int) and not isinstance(
                value, bool
            ):
                value = float(value)
            err = check(value)
            if err:
                raise ConfigError(f"{source}: [{section}] {key} {err}, got {value!r}")
            values[section][key] = value
    h = values["http"]
    if bool(h["tls_cert"]) != bool(h["tls_key"]):
        missing = "tls_key" if h["tls_cert"] else "tls_cert"
        raise ConfigError(f"{source}: [http] {missing} must be set together with the other")
    d = values["dispatch"]
    if d["url"].startswith("http://") and not d["allow_insecure_http"]:
        raise ConfigError(
            f"{source}: [dispatch] url {redact_url(d['url'])!r} is plain http://: the bearer "
            "token, the signature and every alarm would cross the network unencrypted. Use "
            "the dispatch centre's https:// URL; only for a receiver on this machine or a "
            "test bench set [dispatch] allow_insecure_http = true (`panicgw diag` warns)")
    if url_secrets(d["url"]) and d["token"]:
        raise ConfigError(
            f"{source}: [dispatch] url {redact_url(d['url'])!r} carries credentials "
            "(user:password@) and [dispatch] token is set too: dispatch gets one "
            "Authorization header, so use one of them")
    if bool(d["client_cert"]) != bool(d["client_key"]):
        missing = "client_key" if d["client_cert"] else "client_cert"
        raise ConfigError(f"{source}: [dispatch] {missing} must be set together with the other")
    _check_radio(values["serial"], source)
    if base_dir is not None:  # relative paths are relative to the config file
        for sec, key in PATH_KEYS:
            v = values[sec][key]
            if not v or Path(v).is_absolute() or ((sec, key) == ("serial", "port")
                                                  and v == "auto"):
                continue
            values[sec][key] = str(base_dir / v)
    return Config(values, source, sia)


def _check_radio(s: dict[str, Any], source: str) -> None:
    """Fill the radio keys left unset from the region's defaults, then check the whole
    against the region: band, and the dwell limit for an uplink (``frames.UPLINK_LEN``
    bytes: the whole LoRa packet, no RadioHead header) at the configured bandwidth."""
    region = airtime.region(s["region"])
    s["region"] = region.name
    for key, attr in RADIO_DEFAULTS.items():
        if s[key] is None:
            s[key] = getattr(region, attr)
    if not region.check_frequency(s["frequency_mhz"]):
        raise ConfigError(
            f"{source}: [serial] frequency_mhz {s['frequency_mhz']} is outside "
            f"{region.name} ({region.f_min_mhz}-{region.f_max_mhz} MHz)"
        )
    bw = s["bandwidth_hz"]
    try:
        slowest = region.slowest_sf(frames.UPLINK_LEN, bw)
    except ValueError:
        raise ConfigError(
            f"{source}: [serial] bandwidth_hz {bw}: no spreading factor fits "
            f"{region.name}'s dwell-time limit at {bw / 1000:g} kHz"
        ) from None
    if s["spreading_factor"] > slowest:
        air = airtime.time_on_air_ms(frames.UPLINK_LEN, s["spreading_factor"], bw)
        raise ConfigError(
            f"{source}: [serial] spreading_factor {s['spreading_factor']} exceeds "
            f"{region.name}'s dwell-time limit at {bw / 1000:g} kHz (a {frames.UPLINK_LEN}-byte "
            f"uplink takes {air:.1f} ms, limit {region.dwell_ms:g} ms; max SF{slowest})"
        )


def load(path: str | Path | None) -> Config:
    """Defaults when ``path`` is None; otherwise parse and validate the TOML file."""
    if path is None:
        return from_dict({}, "<defaults>")
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(f"{p}: cannot read ({e.strerror})") from None
    try:
        doc = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError:
        raise ConfigError(f"{p}: not UTF-8 text") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{p}: not valid TOML: {e}") from None
    return from_dict(doc, str(p), p.resolve().parent)
