"""Console configuration: TOML over embedded defaults, validated key by key.

The same rules as the gateway's config: every key has a type, a default and a check; an
error names the file, section and key (``[server] port: ...``), and unknown sections and keys
are errors (a typo must not silently fall back to a default in a police control room).
Defaults need nothing installed: SQLite in ``./panicconsole-data``, one process, HTTP on
127.0.0.1:8443 (HTTPS as soon as ``tls_cert``/``tls_key`` are set).
"""

from __future__ import annotations

import difflib
import ipaddress
import math
import os
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit


class ConfigError(ValueError):
    """Invalid configuration; the message names the file, section and key."""


Check = Callable[[Any], str | None]  # an error text, or None when fine

ENV_TOKEN = "PANICCONSOLE_DISPATCH_TOKEN"
ENV_SECRET = "PANICCONSOLE_DISPATCH_SECRET"


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


def _str(empty_ok: bool = True, max_len: int = 1000) -> Check:
    def check(v: Any) -> str | None:
        if not isinstance(v, str) or (not empty_ok and not v.strip()):
            return "must be a non-empty string" if not empty_ok else "must be a string"
        if len(v) > max_len:
            return f"must be at most {max_len} characters"
        return None
    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "must be true or false"


def _one_of(*choices: str) -> Check:
    def check(v: Any) -> str | None:
        return None if v in choices else f"must be one of {', '.join(choices)}"
    return check


def _tile_url(v: Any) -> str | None:
    if not isinstance(v, str):
        return "must be a string"
    if not v:
        return None
    if not v.startswith(("https://", "http://")) or not all(p in v for p in ("{z}", "{x}", "{y}")):
        return ("must be an http(s) URL template with {z}, {x} and {y} "
                "(e.g. https://tiles.example/{z}/{x}/{y}.png), or empty for no tiles")
    return None


# section -> key -> (default, check). Keep the table in docs/console.md in step with this one.
SCHEMA: dict[str, dict[str, tuple[Any, Check]]] = {
    "console": {
        "name": ("Panic-button dispatch console", _str(empty_ok=False, max_len=120)),
        "data_dir": ("panicconsole-data", _str(empty_ok=False)),
        "language": ("id", _one_of("id", "en")),
        "log_level": ("info", _one_of("debug", "info", "warning", "error")),
        "log_format": ("json", _one_of("json", "text")),
    },
    "server": {
        "host": ("127.0.0.1", _str(empty_ok=False)),
        "port": (8443, _int(0, 65535)),
        "tls_cert": ("", _str()),
        "tls_key": ("", _str()),
        "plain_http_on_network": (False, _bool),
    },
    "dispatch": {
        "token": ("", _str()),
        "secret": ("", _str()),
        "tolerance_s": (300.0, _num(1.0, 3600.0)),
        "keep_days": (30, _int(7, 3650)),
    },
    "queue": {
        "warn_after_s": (60, _int(1, 86400)),
        "danger_after_s": (180, _int(2, 86400)),
    },
    "escalation": {
        "take_within_s": (60, _int(1, 86400)),
        "close_within_min": (30.0, _num(0.02, 7 * 1440.0)),
    },
    "gateways": {
        "checkin_overdue_s": (9000, _int(5, 30 * 86400)),
    },
    "security": {
        "session_idle_min": (720, _int(5, 7 * 1440)),
        "login_max_failures": (5, _int(1, 1000)),
        "login_window_s": (300, _int(10, 86400)),
        "min_password_len": (10, _int(8, 128)),
    },
    "live": {
        "heartbeat_s": (5.0, _num(0.2, 60.0)),
    },
    "map": {
        "tile_url": ("", _tile_url),
        "attribution": ("", _str(max_len=500)),
        "center_lat": (-6.2, _num(-90.0, 90.0)),
        "center_lon": (106.8, _num(-180.0, 180.0)),
        "zoom": (12, _int(1, 19)),
        "max_zoom": (19, _int(1, 22)),
    },
}

SECRET_KEYS = (("dispatch", "token"), ("dispatch", "secret"))


@dataclass
class Config:
    """Validated settings: ``cfg.section("server")["port"]`` or ``cfg.server["port"]``."""

    values: dict[str, dict[str, Any]]
    source: str = "<defaults>"

    def section(self, name: str) -> dict[str, Any]:
        return self.values[name]

    def __getattr__(self, name: str) -> dict[str, Any]:
        try:
            return self.__dict__["values"][name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def data_dir(self) -> Path:
        return Path(self.values["console"]["data_dir"])

    @property
    def db_path(self) -> Path:
        return self.data_dir / "console.db"

    @property
    def tls(self) -> bool:
        return bool(self.values["server"]["tls_cert"])

    def url(self, host: str | None = None, port: int | None = None) -> str:
        """The operators' address (``host``/``port`` override the configured ones)."""
        h = host or self.values["server"]["host"]
        if h in ("0.0.0.0", "::", ""):
            h = "127.0.0.1"
        if ":" in h:
            h = f"[{h}]"
        return f"{'https' if self.tls else 'http'}://{h}:{port or self.values['server']['port']}/"

    def redacted(self) -> dict[str, dict[str, Any]]:
        """Values safe to print (token and secret replaced)."""
        out = {s: dict(v) for s, v in self.values.items()}
        for sec, key in SECRET_KEYS:
            if out[sec][key]:
                out[sec][key] = "***"
        return out


def _suggest(word: str, options: list[str]) -> str:
    close = difflib.get_close_matches(word, options, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def from_dict(doc: dict[str, Any], source: str = "<dict>", base_dir: Path | None = None,
              env: dict[str, str] | None = None) -> Config:
    """Validate a parsed TOML document over the defaults; raises ConfigError.

    ``PANICCONSOLE_DISPATCH_TOKEN``/``_SECRET`` in ``env`` (the process environment by
    default) fill an empty ``[dispatch] token``/``secret``, so secrets can stay out of files.
    """
    env = dict(os.environ) if env is None else env
    values = {s: {k: d for k, (d, _) in keys.items()} for s, keys in SCHEMA.items()}
    for section, body in doc.items():
        if section not in SCHEMA:
            raise ConfigError(
                f"{source}: unknown section [{section}]{_suggest(section, list(SCHEMA))}")
        if not isinstance(body, dict):
            raise ConfigError(f"{source}: [{section}] must be a table")
        for key, value in body.items():
            spec = SCHEMA[section].get(key)
            if spec is None:
                raise ConfigError(f"{source}: [{section}] unknown key {key!r}"
                                  f"{_suggest(key, list(SCHEMA[section]))}")
            default, check = spec
            if isinstance(default, float) and isinstance(value, int) and not isinstance(
                    value, bool):
                value = float(value)
            err = check(value)
            if err:
                shown = "***" if (section, key) in SECRET_KEYS else repr(value)
                raise ConfigError(f"{source}: [{section}] {key} {err}, got {shown}")
            values[section][key] = value
    d = values["dispatch"]
    if not d["token"] and env.get(ENV_TOKEN):
        d["token"] = env[ENV_TOKEN]
    if not d["secret"] and env.get(ENV_SECRET):
        d["secret"] = env[ENV_SECRET]
    s = values["server"]
    if bool(s["tls_cert"]) != bool(s["tls_key"]):
        missing = "tls_key" if s["tls_cert"] else "tls_cert"
        raise ConfigError(f"{source}: [server] {missing} must be set together with the other")
    if not s["tls_cert"] and not _loopback(s["host"]) and not s["plain_http_on_network"]:
        raise ConfigError(
            f"{source}: [server] host {s['host']!r} is reachable from the network but TLS is "
            "off: set [server] tls_cert and tls_key (passwords and alarms would cross the "
            "network in clear text), or plain_http_on_network = true behind a TLS proxy")
    q = values["queue"]
    if q["danger_after_s"] <= q["warn_after_s"]:
        raise ConfigError(f"{source}: [queue] danger_after_s ({q['danger_after_s']}) must be "
                          f"greater than warn_after_s ({q['warn_after_s']})")
    if values["map"]["zoom"] > values["map"]["max_zoom"]:
        raise ConfigError(f"{source}: [map] zoom must not exceed max_zoom")
    if base_dir is not None:  # relative paths are relative to the config file
        for sec, key in (("console", "data_dir"), ("server", "tls_cert"),
                         ("server", "tls_key")):
            v = values[sec][key]
            if v and not Path(v).is_absolute():
                values[sec][key] = str(base_dir / v)
    return Config(values, source)


def tile_origin(cfg: Config) -> str:
    """``scheme://host[:port]`` of the tile server ('' without tiles), for the page's CSP."""
    url = cfg.map["tile_url"]
    if not url:
        return ""
    parts = urlsplit(url.replace("{s}", "a"))
    host = parts.netloc
    if "{s}" in url:  # Leaflet's subdomains a/b/c
        host = urlsplit(url.replace("{s}", "*")).netloc
    return f"{parts.scheme}://{host}"


def problems(cfg: Config) -> list[str]:
    """What keeps ``serve`` from working although the file is valid (``config check``)."""
    out = []
    d = cfg.dispatch
    if not d["token"]:
        out.append(f"[dispatch] token is empty (or set {ENV_TOKEN}): the console cannot tell "
                   "a gateway from anyone else; use the value of each gateway's [dispatch] token")
    if not d["secret"]:
        out.append(f"[dispatch] secret is empty (or set {ENV_SECRET}): bodies cannot be "
                   "verified; use the value of each gateway's [dispatch] secret")
    for key in ("tls_cert", "tls_key"):
        p = cfg.server[key]
        if p and not Path(p).is_file():
            out.append(f"[server] {key} {p}: no such file")
    return out


def load(path: str | Path | None, env: dict[str, str] | None = None) -> Config:
    """Defaults when ``path`` is None; otherwise parse and validate the TOML file."""
    if path is None:
        return from_dict({}, "<defaults>", env=env)
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
    return from_dict(doc, str(p), p.resolve().parent, env=env)
