"""`panicgw diag` checks: each returns PASS/WARN/FAIL (or SKIP) with a one-line finding and,
for anything not PASS, a fix hint a technician can act on (docs/diagnostics.md explains each).

Why it is shaped this way:
- It must work on a broken gateway: every check is isolated (an exception in one becomes a
  FAIL naming it, never a crash of the whole run), and nothing needs the daemon.
- When the daemon runs it owns the serial port and knows live state, so we ask its local
  status API (``GET /v1/status``); when it is stopped we read config and DB and speak the
  bridge link protocol ourselves. We never open a serial port another process holds.
- Findings can contain text from config, servers and the DB; every one passes through
  :func:`Redactor` so a token or key never reaches the terminal, JSON or a support bundle.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import secrets as pysecrets
import shlex
import shutil
import socket
import sqlite3
import ssl
import stat
import subprocess
import threading
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from panicgw import access
from panicgw import config as gwconfig
from panicgw.ports import bridge_data_port

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2}

# The earliest date this code can run at: a clock before it is certainly wrong (a Pi without
# RTC and without NTP boots in 1970 or at its last fake-hwclock save).
BUILD_FLOOR = 1795478400.0  # 2026-11-25T00:00:00Z

SECRET_KEY_RE = re.compile(r"(key|token|secret|password|passwd|credential)", re.I)
# Secret-sounding names whose values are not secret: file paths and derived identifiers.
NOT_SECRET_KEYS = ("tls_key", "client_key", "idempotency_key")


def _secret_name(key: str) -> bool:
    return bool(SECRET_KEY_RE.search(key)) and not key.endswith(("_file", "_at")) and (
        key not in NOT_SECRET_KEYS)
REDACTED = "***REDACTED***"


@dataclass
class Thresholds:
    """Every number a check compares against; ``--set name=value`` overrides one."""

    disk_free_warn_mb: float = 500.0
    disk_free_fail_mb: float = 100.0
    disk_free_warn_pct: float = 10.0
    disk_free_fail_pct: float = 2.0
    clock_behind_db_s: float = 300.0
    outbox_backlog_warn: int = 50
    outbox_age_warn_s: float = 300.0
    alarm_age_fail_s: float = 60.0
    dead_letter_window_h: float = 168.0
    supervision_grace_s: float = 300.0
    noise_floor_warn_dbm: float = -100.0
    storm_window_s: float = 3600.0
    storm_warn: int = 20
    storm_fail: int = 500
    storm_rate_warn_per_min: float = 5.0
    tls_expiry_warn_days: float = 21.0
    probe_timeout_s: float = 3.0
    bridge_timeout_s: float = 2.0
    frequency_tolerance_mhz: float = 0.01

    def set(self, assignment: str) -> None:
        """Apply ``name=value``; raises ValueError naming the bad part."""
        name, sep, raw = assignment.partition("=")
        name = name.strip().replace("-", "_")
        known = {f.name: f for f in fields(self)}
        if not sep or name not in known:
            raise ValueError(
                f"--set {assignment!r}: expected NAME=VALUE with NAME one of "
                + ", ".join(sorted(known))
            )
        kind = int if isinstance(getattr(self, name), int) else float
        try:
            setattr(self, name, kind(raw.strip()))
        except ValueError:
            raise ValueError(f"--set {name}: {raw!r} is not a {kind.__name__}") from None


@dataclass
class Result:
    """One line of the checklist."""

    id: str
    title: str
    status: str
    finding: str
    hint: str = ""
    data: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


class Redactor:
    """Replaces every known secret string (and its hex forms) in text and JSON-like data."""

    def __init__(self, secrets: Iterable[str | bytes] = ()) -> None:
        self.secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | bytes | None) -> None:
        if not secret:
            return
        if isinstance(secret, bytes):
            self.secrets.update({secret.hex(), secret.hex().upper()})
            with contextlib.suppress(UnicodeDecodeError):
                text = secret.decode("utf-8")
                if len(text) >= 4 and text.isprintable():
                    self.secrets.add(text)
            return
        if len(secret) >= 4:  # shorter "secrets" would redact ordinary words
            self.secrets.add(secret)

    def text(self, value: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            if s in value:
                value = value.replace(s, REDACTED)
        return value

    def data(self, value: Any, key: str = "") -> Any:
        """Deep copy with secret-named keys masked and known secrets replaced."""
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, key) for v in value]
        if isinstance(value, bytes):
            return REDACTED if _secret_name(key) else value.hex()
        if isinstance(value, str):
            if value and _secret_name(key):
                return REDACTED
            return self.text(value)
        return value


def secrets_in_toml(path: Path | None) -> list[str]:
    """Every string under a secret-looking key in a TOML file, even if it does not validate."""
    if path is None:
        return []
    try:
        doc = tomllib.loads(path.read_text("utf-8", errors="replace"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    out: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, str | int | float) and not isinstance(node, bool) and (
                _secret_name(key)):
            out.append(str(node))

    walk(doc, "")
    return out


def url_without_userinfo(url: str) -> str:
    p = urllib.parse.urlsplit(url)
    if p.username or p.password:
        netloc = p.hostname or ""
        if p.port:
            netloc += f":{p.port}"
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))
    return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, "", ""))


def fmt_age(seconds: float) -> str:
    s = abs(seconds)
    if s < 120:
        text = f"{s:.0f} s"
    elif s < 7200:
        text = f"{s / 60:.0f} min"
    elif s < 172800:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} days"
    return text


# -- context ------------------------------------------------------------------------------------


@dataclass
class Context:
    """What the checks share: config, thresholds, daemon status (if running), time."""

    config_path: Path | None
    thresholds: Thresholds = field(default_factory=Thresholds)
    now: float = field(default_factory=time.time)
    cfg: gwconfig.Config | None = None
    config_error: str | None = None
    status: dict[str, Any] | None = None  # the daemon's /v1/status reply, when it runs
    status_error: str | None = None
    status_url: str | None = None
    redactor: Redactor = field(default_factory=Redactor)
    _db: sqlite3.Connection | None = None
    _db_error: str | None = None

    @property
    def running(self) -> bool:
        return self.status is not None

    def db(self) -> sqlite3.Connection | None:
        """A read-only connection to the gateway DB (None when missing or unreadable),
        opened through panicgw.access like every tool: never created, schema checked."""
        if self._db is not None or self._db_error is not None or self.cfg is None:
            return self._db
        from panicgw import access

        path = self.cfg.db_path
        if not path.exists():
            self._db_error = f"no database at {path}"
            return None
        try:
            db = access.open_db(path, readonly=True).db
            db.execute("SELECT count(*) FROM sqlite_master").fetchone()
        except (access.AccessError, sqlite3.Error) as e:
            self._db_error = f"cannot open {path} read-only: {e}"
            return None
        self._db = db
        return db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def load_context(config_path: Path | None, thresholds: Thresholds | None = None,
                 now: float | None = None) -> Context:
    """Read the config (never raising) and ask the daemon's status API if it answers.
    Without ``config_path``: the installed gateway's (``$PANICGW_CONFIG`` or
    ``/etc/panicgw/gateway.toml``), as for every other tool."""
    from panicgw import access

    if config_path is None:
        config_path = access.default_config()
    ctx = Context(config_path, thresholds or Thresholds(), now if now is not None else time.time())
    for s in secrets_in_toml(config_path):
        ctx.redactor.add(s)
        for part in gwconfig.url_secrets(s):
            ctx.redactor.add(part)
    if not config_path.is_file():
        ctx.config_error = (f"no gateway config at {config_path}: pass --config with the file "
                            "`panicgw run --config` uses")
        return ctx
    try:
        ctx.cfg = gwconfig.load(config_path)
    except gwconfig.ConfigError as e:
        ctx.config_error = ctx.redactor.text(str(e))
        return ctx
    for sec, key in (("dispatch", "token"), ("dispatch", "secret"), ("mqtt", "password")):
        ctx.redactor.add(ctx.cfg.values[sec][key])
    for part in gwconfig.url_secrets(ctx.cfg.dispatch["url"]):
        ctx.redactor.add(part)
    fetch_status(ctx)
    db = ctx.db()
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            for (key,) in db.execute("SELECT key FROM devices"):
                ctx.redactor.add(bytes(key))
    return ctx


def status_endpoint(cfg: gwconfig.Config) -> tuple[str, int] | None:
    """Where the daemon's status API listens: runtime.json (actual port) or the config."""
    s = cfg.status
    if not s["enabled"]:
        return None
    host = s["host"]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    port = int(s["port"])
    runtime = cfg.data_dir / "runtime.json"
    with contextlib.suppress(OSError, ValueError, TypeError):
        info = json.loads(runtime.read_text())
        pid = int(info.get("pid") or 0)
        if pid > 0 and info.get("status_port") and _pid_alive(pid):
            port = int(info["status_port"])
    return host, port


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fetch_status(ctx: Context) -> None:
    assert ctx.cfg is not None
    ep = status_endpoint(ctx.cfg)
    if ep is None:
        ctx.status_error = "status API disabled in config ([status] enabled = false)"
        return
    host, port = ep
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}/v1/status"
    ctx.status_url = url
    try:
        with urllib.request.urlopen(url, timeout=ctx.thresholds.probe_timeout_s) as r:
            doc = json.loads(r.read(2_000_000))
        if not isinstance(doc, dict):
            raise ValueError("status reply is not a JSON object")
        ctx.status = doc
    except (OSError, ValueError, http.client.HTTPException) as e:  # not HTTP: not ours
        ctx.status_error = f"status API at {host}:{port} not answering ({_reason(e)})"


def _reason(e: BaseException) -> str:
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http.client.RemoteDisconnected):
        return "closed the connection without an HTTP answer"
    if isinstance(e, http.client.HTTPException):
        return f"answered something that is not HTTP: {str(e).strip()[:40]!r}"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return f"name does not resolve ({e.strerror})"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {e.verify_message}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__


# -- checks ---------------------------------------------------------------------------------------

CheckFn = Callable[[Context], "Result | list[Result]"]
CHECKS: list[tuple[str, CheckFn]] = []


def check(name: str) -> Callable[[CheckFn], CheckFn]:
    def deco(fn: CheckFn) -> CheckFn:
        CHECKS.append((name, fn))
        return fn
    return deco


def _skip_no_config(ctx: Context, cid: str, title: str) -> Result | None:
    if ctx.cfg is None:
        return Result(cid, title, SKIP, "not checked: the configuration is invalid")
    return None


@check("config")
def check_config(ctx: Context) -> list[Result]:
    where = str(ctx.config_path) if ctx.config_path else "built-in defaults (no --config)"
    if ctx.cfg is None:
        if ctx.config_path is not None and not ctx.config_path.is_file():
            return [Result("config", "Configuration", FAIL, ctx.config_error or "missing",
                           "Give the gateway's config: `panicgw diag --config FILE` (the file "
                           "in the unit's ExecStart, `systemctl cat panicgw`); a fresh Pi "
                           "gets /etc/panicgw/gateway.toml from `sudo panicgw setup`.")]
        return [Result("config", "Configuration", FAIL, ctx.config_error or "invalid",
                       "Fix the named key in the TOML file (docs/gateway.md lists every key), "
                       "then run `panicgw diag` again.")]
    out = [Result("config", "Configuration", PASS, f"valid: {where}")]
    p = ctx.config_path
    if p is not None and secrets_in_toml(p):
        mode = stat.S_IMODE(p.stat().st_mode)
        if mode & 0o077:
            out.append(Result(
                "config.permissions", "Config file permissions", WARN,
                f"{p} holds secrets (token/secret/password) and is mode {mode:04o}",
                f"chmod 600 {p} (and chown it to the gateway's service user)."))
        else:
            out.append(Result("config.permissions", "Config file permissions", PASS,
                              f"mode {mode:04o}"))
    return out


@check("daemon")
def check_daemon(ctx: Context) -> Result:
    title = "Gateway daemon"
    if (r := _skip_no_config(ctx, "daemon", title)) is not None:
        return r
    if ctx.status is not None:
        st = ctx.status
        return Result("daemon", title, PASS,
                      f"running (pid {st.get('pid', '?')}, version {st.get('version', '?')}, "
                      f"up {fmt_age(float(st.get('uptime_s') or 0))})",
                      data={"status_url": ctx.status_url})
    # A FAIL, not a WARN: with the daemon down no alarm is received, stored or forwarded.
    return Result("daemon", title, FAIL,
                  f"not running: {ctx.status_error}; alarms are not being received",
                  "Start it: `sudo systemctl start panicgw` (why it stopped: `journalctl -u "
                  "panicgw -e`). Checks below read the config and DB directly.")


def _db_unavailable(ctx: Context, cid: str, title: str) -> Result | None:
    if (r := _skip_no_config(ctx, cid, title)) is not None:
        return r
    if ctx.db() is None:
        return Result(cid, title, SKIP, f"not checked: {ctx._db_error}")
    return None


def _writable_for_owner(path: Path) -> bool:
    """Can the service user write ``path``? As root (which may write anything) judge by the
    owner's permission bits, because the daemon runs as the owner, not as root."""
    if os.geteuid() != 0:
        return os.access(path, os.W_OK)
    st = path.stat()
    return bool(st.st_mode & stat.S_IWUSR)


@check("database")
def check_database(ctx: Context) -> list[Result]:
    if ctx.cfg is None:
        return [Result("db", "Database", SKIP, "not checked: the configuration is invalid")]
    path = ctx.cfg.db_path
    data_dir = ctx.cfg.data_dir
    if not path.exists():
        return [Result(
            "db", "Database", FAIL, f"no database at {path}",
            "Check [gateway] data_dir; `panicgw run` creates the DB (`sudo panicgw setup` on a "
            "fresh Pi), `panicgw devices import` or `panictool provision --gateway-db` fill "
            "it.")]
    out: list[Result] = []
    db = ctx.db()
    if db is None:
        out.append(Result("db.integrity", "Database integrity", FAIL, str(ctx._db_error),
                          "The file may be corrupt or not a gateway DB; stop panicgw, keep a "
                          "copy, and restore from backup."))
    else:
        try:
            rows = [r[0] for r in db.execute("PRAGMA integrity_check(20)")]
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
        except sqlite3.Error as e:
            rows, version = [f"{e}"], -1
        if rows == ["ok"]:
            out.append(Result("db.integrity", "Database integrity", PASS,
                              f"integrity_check ok, schema v{version}",
                              data={"schema_version": version}))
        else:
            out.append(Result(
                "db.integrity", "Database integrity", FAIL,
                f"integrity_check: {'; '.join(rows[:3])}",
                "Stop panicgw, copy gateway.db*, then `sqlite3 gateway.db .recover > dump.sql` "
                "or restore from backup; open an issue with a support bundle."))
    mode = stat.S_IMODE(path.stat().st_mode)
    problems: list[str] = []
    hints: list[str] = []
    status = PASS
    if mode & 0o077:
        problems.append(f"{path.name} is mode {mode:04o} (it holds device keys)")
        hints.append(f"chmod 600 {path}*")
        status = FAIL
    if not _writable_for_owner(path):
        problems.append(f"{path.name} is not writable (mode {mode:04o})")
        hints.append(f"chmod u+w {path} (owner: the gateway's service user)")
        status = FAIL
    if not _writable_for_owner(data_dir):
        dmode = stat.S_IMODE(data_dir.stat().st_mode)
        problems.append(f"data directory {data_dir} is not writable (mode {dmode:04o}); "
                        "SQLite needs it for the WAL")
        hints.append(f"chmod u+rwx {data_dir}")
        status = FAIL
    try:
        ro = bool(os.statvfs(data_dir).f_flag & os.ST_RDONLY)
    except OSError:
        ro = False
    if ro:
        problems.append(f"{data_dir} is on a read-only filesystem")
        hints.append("remount read-write (an SD card going read-only is failing: replace it)")
        status = FAIL
    out.append(Result("db.permissions", "Database permissions", status,
                      "; ".join(problems) if problems else f"{path.name} mode {mode:04o}, "
                      "file and directory writable",
                      " ".join(hints)))
    out.append(_disk(ctx, data_dir))
    return out


def _disk(ctx: Context, data_dir: Path) -> Result:
    t = ctx.thresholds
    usage = shutil.disk_usage(data_dir)
    free_mb = usage.free / 1e6
    pct = 100.0 * usage.free / usage.total if usage.total else 0.0
    finding = f"{free_mb:,.0f} MB free ({pct:.1f}%) on the filesystem of {data_dir}"
    data = {"free_mb": round(free_mb, 1), "free_pct": round(pct, 2)}
    hint = ("Free space: `sudo journalctl --vacuum-size=100M`, remove old images/logs; "
            "lower [pipeline] heartbeat_retention_days; the DB stops accepting alarms when "
            "the disk is full.")
    if free_mb < t.disk_free_fail_mb or pct < t.disk_free_fail_pct:
        return Result("disk", "Free disk", FAIL,
                      finding + f" (fail below {t.disk_free_fail_mb:g} MB or "
                      f"{t.disk_free_fail_pct:g}%)", hint, data)
    if free_mb < t.disk_free_warn_mb or pct < t.disk_free_warn_pct:
        return Result("disk", "Free disk", WARN,
                      finding + f" (warn below {t.disk_free_warn_mb:g} MB or "
                      f"{t.disk_free_warn_pct:g}%)", hint, data)
    return Result("disk", "Free disk", PASS, finding, data=data)


def build_time() -> float:
    """When this panicgw was built/installed: newest of its files' mtimes, at least the floor."""
    here = Path(__file__).resolve().parents[1]  # the panicgw package, all its folders
    newest = BUILD_FLOOR
    with contextlib.suppress(OSError):
        for p in here.rglob("*.py"):
            newest = max(newest, p.stat().st_mtime)
    return newest


def _ntp_synchronized() -> bool | None:
    if shutil.which("timedatectl") is None:
        return None
    try:
        r = subprocess.run(["timedatectl", "show", "-p", "NTPSynchronized", "--value"],
                           capture_output=True, text=True, timeout=3)
    except (OSError, subprocess.SubprocessError):
        return None
    v = r.stdout.strip().lower()
    return True if v == "yes" else (False if v == "no" else None)


@check("clock")
def check_clock(ctx: Context) -> Result:
    title = "Clock"
    now = ctx.now
    built = build_time()
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(now))
    hint_ntp = ("Enable NTP: `sudo timedatectl set-ntp true` (needs internet or a local NTP "
                "server); a Pi has no battery clock, so add an RTC module where there is no "
                "network time.")
    if now < built - 86400:
        return Result("clock", title, FAIL,
                      f"clock says {when}, before this software was built "
                      f"({time.strftime('%Y-%m-%d', time.gmtime(built))})", hint_ntp)
    db = ctx.db()
    newest = None
    if db is not None:
        with contextlib.suppress(sqlite3.Error):
            newest = db.execute(
                "SELECT max(t) FROM (SELECT max(received_at) AS t FROM events UNION ALL "
                "SELECT max(created_at) FROM outbox UNION ALL "
                "SELECT max(last_heard) FROM device_state)").fetchone()[0]
    if newest is not None and now < float(newest) - ctx.thresholds.clock_behind_db_s:
        return Result("clock", title, FAIL,
                      f"clock says {when}, {fmt_age(float(newest) - now)} behind the newest "
                      "record in the DB: time went backwards",
                      hint_ntp + " Event times recorded while the clock was wrong are wrong too.",
                      data={"newest_db_time": newest})
    synced = _ntp_synchronized()
    if synced is False:
        return Result("clock", title, WARN, f"{when}, but not NTP-synchronized", hint_ntp)
    return Result("clock", title, PASS,
                  f"{when}" + (", NTP-synchronized" if synced else ""))


# -- bridge ---------------------------------------------------------------------------------

RADIO_KEYS: dict[str, tuple[str, ...]] = {
    # config key -> names a bridge STATUS may use for it
    "frequency_mhz": ("frequency_mhz", "frequency", "freq_mhz", "freq"),
    "spreading_factor": ("spreading_factor", "sf"),
    "bandwidth_hz": ("bandwidth_hz", "bandwidth", "bw_hz", "bw"),
    "coding_rate": ("coding_rate", "cr"),
    "tx_power_dbm": ("tx_power_dbm", "tx_power", "power_dbm", "power"),
}
NOISE_KEYS = ("noise_floor_dbm", "noise_floor", "noise_dbm", "rssi_floor")


def _find(doc: Any, names: Iterable[str]) -> Any:
    """First value under any of ``names`` in a dict or its nested dicts (``radio``, ...)."""
    if not isinstance(doc, dict):
        return None
    names = tuple(names)
    for n in names:
        if n in doc and not isinstance(doc[n], dict):
            return doc[n]
    for v in doc.values():
        if isinstance(v, dict):
            found = _find(v, names)
            if found is not None:
                return found
    return None


def radio_mismatches(cfg_serial: dict[str, Any], bridge_status: dict[str, Any],
                     tol_mhz: float) -> list[str]:
    out = []
    for key, names in RADIO_KEYS.items():
        have = _find(bridge_status, names)
        if have is None or isinstance(have, bool) or not isinstance(have, int | float):
            continue
        want = cfg_serial[key]
        if key == "frequency_mhz":
            h = float(have)
            if h > 1e5:  # reported in Hz
                h /= 1e6
            if abs(h - float(want)) > tol_mhz:
                out.append(f"frequency {h:g} MHz (config {want:g})")
        elif key == "bandwidth_hz":
            h = float(have)
            if h < 1000:  # reported in kHz
                h *= 1000
            if abs(h - float(want)) > 1:
                out.append(f"bandwidth {h:g} Hz (config {want})")
        elif int(have) != int(want):
            label = {"spreading_factor": "SF", "tx_power_dbm": "TX power",
                     "coding_rate": "coding rate 4/"}[key]
            out.append(f"{label} {have} (config {want})")
    return out


def port_holders(device: str) -> list[tuple[int, str]]:
    """Processes (pid, command) that have ``device`` open, from /proc (Linux)."""
    try:
        target = os.path.realpath(device)
        st = os.stat(target)
    except OSError:
        return []
    me = os.getpid()
    out = []
    proc = Path("/proc")
    if not proc.is_dir():
        return []
    for pdir in proc.iterdir():
        if not pdir.name.isdigit() or int(pdir.name) == me:
            continue
        try:
            for fd in (pdir / "fd").iterdir():
                try:
                    fst = os.stat(fd)
                except OSError:
                    continue
                if fst.st_rdev == st.st_rdev and stat.S_ISCHR(fst.st_mode) and (
                        fst.st_ino == st.st_ino):
                    cmd = (pdir / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                        "utf-8", "replace").strip()
                    out.append((int(pdir.name), cmd[:120]))
                    break
        except OSError:
            continue
    return out


def find_bridge_port(cfg_serial: dict[str, Any]) -> tuple[str | None, str]:
    """(port, how) for the configured port, or the daemon's own auto-detection rule."""
    port = cfg_serial["port"]
    if port != "auto":
        return (port if os.path.exists(port) else None), f"configured port {port}"
    return bridge_data_port(cfg_serial["usb_vid"])


class LinkClient:
    """Enough of the bridge link protocol to PING and ask STATUS (panicproto.link)."""

    def __init__(self, port: str, baudrate: int, timeout: float) -> None:
        import serial

        self.timeout = timeout
        self.ser = serial.Serial(port, baudrate, timeout=0.05, exclusive=True)
        from panicproto import link

        self.link = link
        self.decoder = link.Decoder()
        self.logs: list[str] = []
        self.seq = pysecrets.randbelow(256)

    def close(self) -> None:
        self.ser.close()

    def request(self, kind: int, payload: bytes, want: int) -> Any:
        """Send one message; the reply of type ``want`` with our seq, or None on timeout."""
        self.seq = (self.seq + 1) & 0xFF
        seq = self.seq
        self.ser.write(self.link.encode(kind, seq, payload))
        self.ser.flush()
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            data = self.ser.read(256)
            for msg in self.decoder.feed(data):
                if msg.kind == self.link.LOG:
                    self.logs.append(msg.payload.decode("utf-8", "replace")[:200])
                elif msg.kind == want and msg.seq == seq:
                    if want == self.link.PONG and msg.payload != payload:
                        continue
                    return msg
        return None


def _bridge_direct(ctx: Context, cfg_serial: dict[str, Any]) -> list[Result]:
    t = ctx.thresholds
    port, how = find_bridge_port(cfg_serial)
    unplugged_hint = ("Check the bridge's USB cable and power; `ls -l /dev/serial/by-id/`; "
                      "set [serial] port to the by-id path (or \"auto\"); reflash with "
                      "`panictool flash --role bridge` if it does not enumerate.")
    if port is None:
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"bridge not found: {how}", unplugged_hint),
                Result("bridge.ping", "Bridge answers PING", SKIP, "no bridge"),
                Result("bridge.radio", "Bridge radio settings", SKIP, "no bridge"),
                Result("bridge.noise", "Radio noise floor", SKIP, "no bridge")]
    holders = port_holders(port)
    if holders:
        who = ", ".join(f"pid {p} ({c})" for p, c in holders)
        return [Result("bridge.present", "Bridge present", PASS, f"{port} ({how})"),
                Result("bridge.ping", "Bridge answers PING", WARN,
                       f"{port} is held by {who}; not opened (diag never steals the port)",
                       "If that is panicgw, enable its status API ([status] enabled = true) "
                       "so diag can ask it; otherwise stop the other program."),
                Result("bridge.radio", "Bridge radio settings", SKIP, "port busy"),
                Result("bridge.noise", "Radio noise floor", SKIP, "port busy")]
    present = Result("bridge.present", "Bridge present", PASS, f"{port} ({how})")
    try:
        client = LinkClient(port, cfg_serial["baudrate"], t.bridge_timeout_s)
    except Exception as e:  # pyserial raises SerialException/OSError/ValueError
        text = str(e)
        hint = unplugged_hint
        if "ermission" in text:
            hint = ("Add the service user to the dialout group: `sudo usermod -aG dialout "
                    "<user>` and log in again.")
        elif "lock" in text.lower() or "busy" in text.lower():
            hint = "Another program has the port open: stop it (is panicgw running?)."
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"cannot open {port}: {text[:160]}", hint),
                Result("bridge.ping", "Bridge answers PING", SKIP, "port not opened"),
                Result("bridge.radio", "Bridge radio settings", SKIP, "port not opened"),
                Result("bridge.noise", "Radio noise floor", SKIP, "port not opened")]
    try:
        from panicproto import link

        nonce = pysecrets.token_bytes(4)
        pong = client.request(link.PING, nonce, link.PONG)
        if pong is None:
            logs = f"; its last log: {client.logs[-1]!r}" if client.logs else ""
            return [present,
                    Result("bridge.ping", "Bridge answers PING", FAIL,
                           f"no PONG from {port} within {t.bridge_timeout_s:g} s{logs}",
                           "Wrong device or bridge firmware not running: check the port, "
                           "watch `panictool console`, reflash with "
                           "`panictool flash --role bridge`."),
                    Result("bridge.radio", "Bridge radio settings", SKIP, "bridge silent"),
                    Result("bridge.noise", "Radio noise floor", SKIP, "bridge silent")]
        ping = Result("bridge.ping", "Bridge answers PING", PASS, f"PONG from {port}")
        reply = client.request(link.STATUS, b"", link.STATUS)
        status_doc: Any = None
        if reply is not None:
            with contextlib.suppress(ValueError):
                status_doc = json.loads(reply.payload.decode("utf-8"))
    finally:
        client.close()
    if not isinstance(status_doc, dict):
        return [present, ping,
                Result("bridge.radio", "Bridge radio settings", FAIL,
                       "bridge answers PING but sent no valid STATUS",
                       "Update the bridge firmware (`panictool flash --role bridge`)."),
                Result("bridge.noise", "Radio noise floor", SKIP, "no STATUS")]
    return [present, ping, *_radio_results(ctx, cfg_serial, status_doc, live=False)]


RESTART = "`sudo systemctl restart panicgw`"


def _config_result(ctx: Context, cfg_serial: dict[str, Any],
                   rc: dict[str, Any]) -> Result | None:
    """bridge.radio from the daemon's CONFIG push (contract C6), or None when the push went
    through and the STATUS comparison decides."""
    state = rc.get("state")
    detail = str(rc.get("detail") or "")[:200]
    where = f"[serial] in {ctx.config_path}" if ctx.config_path else "[serial] in the config"
    title = "Bridge radio settings"
    if state == "rejected":
        return Result("bridge.radio", title, FAIL,
                      f"the bridge refused the gateway's radio settings: {detail}",
                      f"The bridge names the setting it cannot take: fix it in {where} "
                      f"(frequency_mhz, spreading_factor, bandwidth_hz, coding_rate, "
                      f"tx_power_dbm), then {RESTART}.", {"radio_config": rc})
    if state == "no_reply":
        return Result("bridge.radio", title, FAIL,
                      "the bridge does not answer the gateway's CONFIG (its radio settings "
                      "push): firmware too old or stuck",
                      "Update the bridge firmware with `panictool flash --role bridge` and "
                      "replug it; the gateway pushes its settings on every connect.",
                      {"radio_config": rc})
    if state == "mismatch":
        return Result("bridge.radio", title, FAIL,
                      f"the bridge took CONFIG but reports other settings: {detail}",
                      "The bridge firmware does not apply what it accepts: reflash it with "
                      "`panictool flash --role bridge` and replug it.", {"radio_config": rc})
    if state in ("sent", "not_sent"):
        return Result("bridge.radio", title, WARN,
                      "the gateway has not had the bridge confirm its radio settings yet",
                      "Run diag again in a few seconds.", {"radio_config": rc})
    return None


def _radio_results(ctx: Context, cfg_serial: dict[str, Any], status_doc: dict[str, Any],
                   live: bool, rc: dict[str, Any] | None = None) -> list[Result]:
    t = ctx.thresholds
    if "radio" in status_doc and status_doc["radio"] is None:
        err = str(status_doc.get("radio_error") or "no radio")[:160]
        return [Result("bridge.radio", "Bridge radio settings", FAIL,
                       f"the bridge's radio is not working: {err}",
                       "The LoRa module does not answer the bridge: check the radio board/"
                       "FeatherWing seating and antenna, then replug; replace the bridge if it "
                       "persists."),
                Result("bridge.noise", "Radio noise floor", SKIP, "no radio")]
    mism = radio_mismatches(cfg_serial, status_doc, t.frequency_tolerance_mhz)
    reported = [k for k, names in RADIO_KEYS.items() if _find(status_doc, names) is not None]
    pushed = _config_result(ctx, cfg_serial, rc) if rc else None
    if pushed is not None:
        radio = pushed
    elif mism and live:
        # The push went through once; the bridge reports something else since (a reset).
        radio = Result("bridge.radio", "Bridge radio settings", FAIL,
                       "bridge radio differs from config: " + ", ".join(mism),
                       "The gateway pushes [serial]'s settings again within 30 s; if this "
                       "stays, reflash the bridge with `panictool flash --role bridge` and "
                       f"replug it, or {RESTART}.")
    elif mism:
        radio = Result("bridge.radio", "Bridge radio settings", FAIL,
                       "bridge radio differs from config: " + ", ".join(mism),
                       "Nothing to edit on the bridge: `panicgw run` pushes the [serial] radio "
                       "settings to it whenever it connects. Start the gateway (`sudo "
                       "systemctl start panicgw`) and run diag again. Only if the buttons "
                       "really use the bridge's values, put those in [serial] instead.")
    elif not reported:
        radio = Result("bridge.radio", "Bridge radio settings", WARN,
                       "bridge STATUS reports no radio settings",
                       "Update the bridge firmware (`panictool flash --role bridge`).")
    else:
        radio = Result("bridge.radio", "Bridge radio settings", PASS,
                       f"match config ({cfg_serial['frequency_mhz']:g} MHz, "
                       f"SF{cfg_serial['spreading_factor']}, "
                       f"{cfg_serial['bandwidth_hz'] / 1000:g} kHz)")
    noise = _find(status_doc, NOISE_KEYS)
    if not isinstance(noise, int | float) or isinstance(noise, bool):
        nres = Result("bridge.noise", "Radio noise floor", SKIP,
                      "the bridge does not report a noise floor")
    elif noise > t.noise_floor_warn_dbm:
        nres = Result("bridge.noise", "Radio noise floor", WARN,
                      f"noise floor {noise:g} dBm is above {t.noise_floor_warn_dbm:g} dBm: "
                      "interference cuts range", "Move the antenna away from the Pi, USB 3 "
                      "ports and power supplies; use a proper outdoor antenna; look for other "
                      "transmitters near the channel.", {"noise_floor_dbm": noise})
    else:
        nres = Result("bridge.noise", "Radio noise floor", PASS, f"{noise:g} dBm",
                      data={"noise_floor_dbm": noise})
    return [radio, nres]


@check("bridge")
def check_bridge(ctx: Context) -> list[Result]:
    if ctx.cfg is None:
        return [Result("bridge.present", "Bridge present", SKIP,
                       "not checked: the configuration is invalid")]
    cfg_serial = ctx.cfg.serial
    if not cfg_serial["enabled"]:
        return [Result("bridge.present", "Bridge present", SKIP,
                       "LoRa disabled ([serial] enabled = false)")]
    if ctx.status is None:
        return _bridge_direct(ctx, cfg_serial)
    b = ctx.status.get("bridge")
    if not isinstance(b, dict):
        return [Result("bridge.present", "Bridge present", WARN,
                       "the daemon's status API reports no bridge state",
                       "Upgrade panicgw; or stop it and run diag to probe the port directly.")]
    state = str(b.get("state", "unknown"))
    port = b.get("port") or cfg_serial["port"]
    if state in ("missing", "disconnected", "absent", "closed", "error", "unplugged"):
        err = b.get("error") or b.get("last_error") or ""
        return [Result("bridge.present", "Bridge present", FAIL,
                       f"daemon reports bridge {state} at {port}" + (f": {err}" if err else ""),
                       "Check the bridge's USB cable and power; `ls -l /dev/serial/by-id/`; "
                       "the daemon reconnects by itself once it is back."),
                Result("bridge.ping", "Bridge answers PING", SKIP, "no bridge")]
    if state in ("reader_dead", "reader_stalled"):
        # The daemon's reader, not the bridge, is what failed (bridge.reader says how).
        return [Result("bridge.present", "Bridge present", SKIP,
                       f"unknown: the daemon is not reading {port}", data={"bridge": b}),
                *_reader_result(b),
                Result("bridge.ping", "Bridge answers PING", SKIP, "the reader is not running")]
    present = Result("bridge.present", "Bridge present", PASS, f"{state} at {port}",
                     data={"bridge": b})
    pong_age = b.get("last_pong_age_s")
    if pong_age is None and isinstance(b.get("last_pong"), int | float):
        pong_age = ctx.now - float(b["last_pong"])
    ping_limit = max(3 * float(cfg_serial["ping_interval_s"]), 5.0)
    if isinstance(pong_age, int | float) and pong_age > ping_limit:
        ping = Result("bridge.ping", "Bridge answers PING", FAIL,
                      f"last PONG {fmt_age(pong_age)} ago (expected every "
                      f"{cfg_serial['ping_interval_s']:g} s)",
                      "The bridge is wedged: unplug and replug it; check `journalctl -u "
                      "panicgw` for link errors; reflash with `panictool flash --role bridge`.")
    elif isinstance(pong_age, int | float):
        ping = Result("bridge.ping", "Bridge answers PING", PASS,
                      f"last PONG {fmt_age(pong_age)} ago")
    else:
        ping = Result("bridge.ping", "Bridge answers PING", PASS if state in (
            "connected", "ok", "up", "ready") else WARN, f"daemon reports state {state!r}",
            "" if state in ("connected", "ok", "up", "ready") else
            "Wait a few seconds and run diag again; check `journalctl -u panicgw`.")
    bstatus = b.get("bridge") if isinstance(b.get("bridge"), dict) else None
    reader = _reader_result(b)
    if bstatus is None:
        return [present, *reader, ping,
                Result("bridge.radio", "Bridge radio settings", WARN,
                       "the daemon has no STATUS from the bridge yet",
                       "Run diag again in a few seconds; if it stays, update the bridge "
                       "firmware (`panictool flash --role bridge`).")]
    rc = b.get("radio_config") if isinstance(b.get("radio_config"), dict) else None
    return [present, *reader, ping,
            *_radio_results(ctx, cfg_serial, bstatus, live=True, rc=rc)]


def _reader_result(b: dict[str, Any]) -> list[Result]:
    """bridge.reader: the daemon's serial reader thread (a dead one reads nothing while the
    bridge itself may be fine; a quiet one is just a quiet neighbourhood)."""
    r = b.get("reader")
    if not isinstance(r, dict):
        return []  # an older daemon
    errors = int(r.get("errors") or 0)
    last = str(r.get("last_error") or "")[:200]
    title = "Serial reader running"
    if not r.get("alive", True) or b.get("state") in ("reader_dead", "reader_stalled"):
        how = "stopped" if not r.get("alive", True) else (
            f"stalled for {fmt_age(float(r.get('idle_s') or 0))}")
        return [Result("bridge.reader", title, FAIL,
                       f"the daemon's serial reader has {how}: no LoRa frame is read or "
                       "acknowledged" + (f" (last error: {last})" if last else ""),
                       f"A gateway fault, not the bridge's: {RESTART}, then send `journalctl "
                       "-u panicgw` to the maintainers.", {"reader": r})]
    if errors:
        return [Result("bridge.reader", title, WARN,
                       f"{errors} reader fault(s) since start, the link reopened each time; "
                       f"last: {last}",
                       "Reception continues; send `journalctl -u panicgw` to the maintainers.",
                       {"reader": r})]
    return [Result("bridge.reader", title, PASS, "reading, no faults", {"reader": r})]


# -- network services --------------------------------------------------------------------------


@check("http")
def check_http(ctx: Context) -> Result:
    title = "HTTP ingest (Wi-Fi buttons)"
    if (r := _skip_no_config(ctx, "http", title)) is not None:
        return r
    h = ctx.cfg.http  # type: ignore[union-attr]
    if not h["enabled"]:
        return Result("http", title, SKIP, "Wi-Fi ingest disabled ([http] enabled = false)")
    host = h["host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    port = int(h["port"])
    st_http = (ctx.status or {}).get("http")
    if isinstance(st_http, dict) and isinstance(st_http.get("port"), int):
        port = st_http["port"]
    scheme = "https" if h["tls_cert"] else "http"
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/v1/health"
    sctx = ssl.create_default_context()
    sctx.check_hostname = False  # a liveness probe of our own listener on localhost
    sctx.verify_mode = ssl.CERT_NONE
    try:
        with urllib.request.urlopen(url, timeout=ctx.thresholds.probe_timeout_s,
                                    context=sctx if scheme == "https" else None) as r:
            body = r.read(65536)
            code = r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(65536), e.code
    except (OSError, http.client.HTTPException) as e:  # BadStatusLine: not HTTP at all
        if ctx.running:
            return Result("http", title, FAIL,
                          f"daemon runs but nothing answers {url} ({_reason(e)})",
                          "Check `journalctl -u panicgw` for a bind error; another program may "
                          "hold the port; check [http] host/port and the firewall.")
        if _accepts(host, port, ctx.thresholds.probe_timeout_s):
            # Something holds the port but does not speak the gateway's HTTP: panicgw would
            # fail to bind there, so "start panicgw" would be the wrong advice.
            return Result("http", title, FAIL,
                          f"a program that is not the gateway holds {host}:{port} (it accepts "
                          f"connections; the HTTP probe: {_reason(e)}); the daemon is stopped",
                          "Another program holds the port, so panicgw cannot start its Wi-Fi "
                          "ingest: find it with `sudo ss -ltnp`, move it or change [http] port.")
        return Result("http", title, SKIP if isinstance(
            e, ConnectionRefusedError) or "refused" in _reason(e) else WARN,
            f"nothing listening on {host}:{port} ({_reason(e)}); the daemon is stopped",
            "Start panicgw (`sudo systemctl start panicgw`).")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    # The gateway's health JSON names its gateway and protocol; any other JSON is not ours.
    if code == 200 and isinstance(doc, dict) and "gateway_id" in doc and "protocol" in doc:
        return Result("http", title, PASS, f"{url} answers ({doc.get('status', 'ok')})")
    return Result("http", title, FAIL,
                  f"{url} answered HTTP {code}, not the gateway's health JSON",
                  "Another program holds the port: find it with `sudo ss -ltnp`, "
                  "move it or change [http] port.")


def _accepts(host: str, port: int, timeout: float) -> bool:
    """Whether anything accepts TCP connections on host:port (ours or another program)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


@check("mqtt")
def check_mqtt(ctx: Context) -> Result:
    title = "MQTT broker"
    if (r := _skip_no_config(ctx, "mqtt", title)) is not None:
        return r
    m = ctx.cfg.mqtt  # type: ignore[union-attr]
    if not m["enabled"]:
        return Result("mqtt", title, SKIP, "no broker configured (optional: [mqtt] enabled)")
    where = f"{m['host']}:{m['port']}"
    broker = (ctx.status or {}).get("broker")
    daemon_view = ""
    if isinstance(broker, dict) and broker.get("state"):
        daemon_view = f"; daemon reports {broker['state']}"
    rc, detail = mqtt_probe(m["host"], m["port"], m["username"], m["password"], m["tls"],
                            ctx.thresholds.probe_timeout_s)
    if rc == 0:
        if isinstance(broker, dict) and broker.get("state") == "disconnected":
            return Result("mqtt", title, WARN,
                          f"broker at {where} accepts diag but the daemon is disconnected",
                          "The daemon reconnects by itself; if it stays disconnected, restart "
                          "panicgw and check its log.")
        return Result("mqtt", title, PASS, f"connected to {where}{daemon_view}")
    hint = ("Start or fix the broker (`systemctl status mosquitto`), check [mqtt] host/port "
            "and the firewall. Alarms still reach dispatch without it: only status and "
            "telemetry are affected.")
    if rc in (4, 5, 134, 135):
        hint = "The broker refuses our login: check [mqtt] username/password and its ACL."
    return Result("mqtt", title, WARN, f"broker at {where}: {detail}{daemon_view}", hint)


def mqtt_probe(host: str, port: int, username: str, password: str, use_tls: bool,
               timeout: float) -> tuple[int, str]:
    """(0, "ok") when the broker accepts a CONNECT, else (code, reason); never raises."""
    import paho.mqtt.client as mqtt

    done = threading.Event()
    result: dict[str, Any] = {}

    def on_connect(client: Any, userdata: Any, flags: Any, rc: Any, props: Any = None) -> None:
        result["rc"] = int(getattr(rc, "value", rc))
        result["text"] = str(rc)
        done.set()

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                         client_id=f"panicgw-diag-{pysecrets.token_hex(4)}")
    client.on_connect = on_connect
    if username:
        client.username_pw_set(username, password or None)
    if use_tls:
        client.tls_set()
    try:
        client.connect(host, port, keepalive=10)
    except OSError as e:
        return -1, f"unreachable ({_reason(e)})"
    client.loop_start()
    try:
        if not done.wait(timeout):
            return -2, f"no CONNACK within {timeout:g} s"
    finally:
        client.disconnect()
        client.loop_stop()
    rc = result.get("rc", -3)
    return (0, "ok") if rc == 0 else (rc, f"refused the connection ({result.get('text')})")


# -- dispatch -----------------------------------------------------------------------------------


def dispatch_ssl_context(d: dict[str, Any]) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=d["ca_file"] or None)
    if d["client_cert"]:
        ctx.load_cert_chain(d["client_cert"], d["client_key"])
    return ctx


@check("dispatch")
def check_dispatch(ctx: Context) -> list[Result]:
    title = "Dispatch reachable"
    if ctx.cfg is None:
        return [Result("dispatch", title, SKIP, "not checked: the configuration is invalid")]
    d = ctx.cfg.dispatch
    url = d["url"]
    if not url:
        return [Result("dispatch", title, FAIL,
                       "no dispatch URL configured: alarms are stored but sent nowhere",
                       "Set [dispatch] url, token and secret (from the dispatch centre), then "
                       "restart panicgw.")]
    shown = url_without_userinfo(url)
    parts = urllib.parse.urlsplit(url)
    out: list[Result] = []
    try:
        sctx = dispatch_ssl_context(d) if parts.scheme == "https" else None
    except (OSError, ssl.SSLError) as e:
        return [Result("dispatch", title, FAIL, f"cannot load TLS files: {_reason(e)}",
                       "Check [dispatch] ca_file / client_cert / client_key paths and that "
                       "the service user can read them.")]
    code, detail = dispatch_probe(url, d["token"], d["secret"], sctx,
                                  ctx.thresholds.probe_timeout_s)
    if code is None:
        out.append(Result("dispatch", title, FAIL, f"{shown}: {detail}",
                          "Check the gateway's internet link (`ping`, `curl -v` the URL), DNS, "
                          "the firewall and that the dispatch service is up; pending alarms "
                          "stay in the outbox and are retried."))
        auth = Result("dispatch.auth", "Dispatch accepts our credentials", SKIP,
                      "dispatch not reachable")
    else:
        if code >= 500:
            out.append(Result("dispatch", title, FAIL, f"{shown} answered HTTP {code}",
                              "The dispatch service reports an internal error: tell the "
                              "dispatch centre's operators; alarms are kept and retried."))
        elif code in (404, 405):
            out.append(Result("dispatch", title, FAIL,
                              f"{shown} answered HTTP {code}: this URL does not take events",
                              "Check [dispatch] url against docs/dispatch-api.md (it ends in "
                              "/v1/events); deliveries would be dead-lettered."))
        else:
            out.append(Result("dispatch", title, PASS, f"{shown} answered HTTP {code}"))
        if code in (401, 403):
            auth = Result("dispatch.auth", "Dispatch accepts our credentials", FAIL,
                          f"dispatch rejected our token or signature (HTTP {code})",
                          "Ask the dispatch centre for this gateway's token and signing "
                          "secret and set [dispatch] token / secret, then restart panicgw; "
                          "until then nothing is sent (alarms are kept and retried, never "
                          "dead-lettered): phone alarms in.")
        elif code >= 500 or code in (404, 405):
            auth = Result("dispatch.auth", "Dispatch accepts our credentials", SKIP,
                          f"cannot tell: dispatch answered HTTP {code}")
        elif not d["token"]:
            auth = Result("dispatch.auth", "Dispatch accepts our credentials", WARN,
                          f"no [dispatch] token configured; dispatch answered HTTP {code}",
                          "Set [dispatch] token if the dispatch centre issues one.")
        else:
            auth = Result("dispatch.auth", "Dispatch accepts our credentials", PASS,
                          f"token and signature accepted (HTTP {code} to {detail}, "
                          "which creates no incident)")
    out.append(_running_auth(ctx, auth))
    if parts.scheme == "http":
        out.append(Result("dispatch.insecure", "Dispatch over plain HTTP", WARN,
                          "[dispatch] allow_insecure_http = true: the bearer token, the "
                          "signature and every alarm cross the network unencrypted",
                          "Use the dispatch centre's https:// URL and remove "
                          "allow_insecure_http (it is meant for a receiver on this machine "
                          "or a test bench)."))
    if not d["secret"]:
        out.append(Result("dispatch.signing", "Dispatch body signing", WARN,
                          "no [dispatch] secret: bodies are not signed",
                          "Set [dispatch] secret (shared with dispatch) so it can verify "
                          "that alarms come from this gateway."))
    out.append(tls_expiry(parts, sctx, ctx))
    return out


def _running_auth(ctx: Context, probe: Result) -> Result:
    """The running daemon's forwarder knows better than one probe: it may still use the
    credentials it loaded at start (config fixed but not restarted), or dispatch may refuse
    it for a reason the probe does not hit (403 by client certificate or address)."""
    fwd = (ctx.status or {}).get("dispatch")
    if not isinstance(fwd, dict) or not fwd.get("auth_failed"):
        return probe
    n = fwd.get("auth_failures") or 0
    since = fwd.get("auth_failed_since")
    age = f" for {fmt_age(ctx.now - since)}" if isinstance(since, (int, float)) else ""
    status = fwd.get("last_status")
    running = (f"the running daemon's deliveries are refused (HTTP {status}, {n} times"
               f"{age}); nothing is sent, messages are kept and retried")
    data = {**probe.data, "daemon_auth_failed": True, "auth_failures": n,
            "auth_failed_since": since}
    if probe.status == PASS:
        return Result("dispatch.auth", probe.title, FAIL,
                      f"{running}, although this config's credentials are accepted",
                      "The daemon still uses the token/secret/certificate it loaded at start: "
                      "restart panicgw (`sudo systemctl restart panicgw`) to load the fixed "
                      "config. Phone pending alarms in meanwhile.", data)
    return Result("dispatch.auth", probe.title, FAIL, f"{probe.finding}; {running}",
                  probe.hint or "Ask the dispatch centre for this gateway's token, signing "
                  "secret and client certificate; check the clock (`timedatectl`), then "
                  "restart panicgw.", data)


PROBE_BODY = b'{"probe":"panicgw-diag"}'


def dispatch_probe(url: str, token: str, secret: str, sctx: ssl.SSLContext | None,
                   timeout: float) -> tuple[int | None, str]:
    """(HTTP status, what was sent) of an authenticated request that creates no incident.

    The dispatch contract (docs/dispatch-api.md, dispatch_server.py) defines no health probe,
    so we POST to the events URL exactly as the forwarder does (bearer token, signature over
    the body) but with a body that is not a valid event, ``{"probe":"panicgw-diag"}``.
    Dispatch checks credentials before the schema: 401/403 means the token or signature is
    refused; 400/422 means they were accepted and the body (by design) rejected; no incident
    is ever created. (status None = not reachable)."""
    from panicgw.forward.contract import SIGNATURE_HEADER, sign

    headers = {"User-Agent": "panicgw-diag", "Content-Type": "application/json",
               "X-Panic-Probe": "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret.encode(), int(time.time()), PROBE_BODY)
    req = urllib.request.Request(url, data=PROBE_BODY, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=sctx) as r:
            return r.status, "a signed probe POST"
    except urllib.error.HTTPError as e:
        return e.code, "a signed probe POST"
    except (OSError, ValueError) as e:
        return None, f"not reachable ({_reason(e)})"


def tls_expiry(parts: urllib.parse.SplitResult, sctx: ssl.SSLContext | None,
               ctx: Context) -> Result:
    title = "Dispatch TLS certificate"
    if parts.scheme != "https" or sctx is None:
        return Result("dispatch.tls", title, SKIP,
                      "no TLS: the dispatch URL is plain http (see dispatch.insecure)")
    host = parts.hostname or ""
    port = parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=ctx.thresholds.probe_timeout_s) as s:
            with sctx.wrap_socket(s, server_hostname=host) as tls:
                cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as e:
        return Result("dispatch.tls", title, FAIL,
                      f"certificate of {host} not trusted: {e.verify_message}",
                      "If dispatch uses a private CA, set [dispatch] ca_file to its "
                      "certificate; otherwise the server's chain is broken or expired.")
    except (OSError, ssl.SSLError) as e:
        return Result("dispatch.tls", title, SKIP, f"no TLS handshake ({_reason(e)})")
    not_after = ssl.cert_time_to_seconds(cert["notAfter"]) if cert else None
    if not_after is None:
        return Result("dispatch.tls", title, WARN, "server sent no certificate details",
                      "Check the server's TLS configuration.")
    left = not_after - ctx.now
    when = time.strftime("%Y-%m-%d", time.gmtime(not_after))
    data = {"not_after": when, "days_left": round(left / 86400, 1)}
    if left <= 0:
        return Result("dispatch.tls", title, FAIL, f"certificate expired on {when}",
                      "The dispatch centre must renew its certificate now.", data)
    if left < ctx.thresholds.tls_expiry_warn_days * 86400:
        return Result("dispatch.tls", title, WARN,
                      f"certificate expires on {when} ({left / 86400:.0f} days)",
                      "Tell the dispatch centre to renew it before then.", data)
    return Result("dispatch.tls", title, PASS,
                  f"valid until {when} ({left / 86400:.0f} days)", data)


# -- outbox, dead letters, devices, rejections ------------------------------------------------


@check("outbox")
def check_outbox(ctx: Context) -> Result:
    title = "Outbox backlog"
    if (r := _db_unavailable(ctx, "outbox", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    t = ctx.thresholds
    n, oldest = db.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending'").fetchone()
    na, oldest_alarm = db.execute(
        "SELECT count(*), min(created_at) FROM outbox WHERE state = 'pending' AND priority = 0"
    ).fetchone()
    err_row = db.execute(
        "SELECT last_error FROM outbox WHERE state = 'pending' AND last_error IS NOT NULL "
        "ORDER BY priority, created_at LIMIT 1").fetchone()
    last_err = f"; last error: {ctx.redactor.text(err_row[0])[:120]}" if err_row else ""
    queue = (ctx.status or {}).get("ingest_queue")
    data = {"pending": n, "pending_alarms": na, "oldest_age_s":
            round(ctx.now - oldest, 1) if oldest else None, "ingest_queue": queue}
    hint = ("Run `panicgw diag` dispatch checks above; pending messages are retried "
            "automatically once dispatch answers (`panicgw events --kind panic` lists them).")
    if na and ctx.now - oldest_alarm > t.alarm_age_fail_s:
        return Result("outbox", title, FAIL,
                      f"{na} alarm(s) not delivered, oldest {fmt_age(ctx.now - oldest_alarm)} "
                      f"old{last_err}", "Alarms are NOT reaching the police: phone the dispatch "
                      "centre with the site details now. " + hint, data)
    if n and (n > t.outbox_backlog_warn or ctx.now - oldest > t.outbox_age_warn_s):
        return Result("outbox", title, WARN,
                      f"{n} message(s) waiting, oldest {fmt_age(ctx.now - oldest)} old{last_err}",
                      hint, data)
    extra = f", ingest queue {queue}" if isinstance(queue, int) else ""
    if n:
        return Result("outbox", title, PASS,
                      f"{n} message(s) in flight, oldest {fmt_age(ctx.now - oldest)}{extra}",
                      data=data)
    return Result("outbox", title, PASS, f"empty{extra}", data=data)


@check("dead_letters")
def check_dead_letters(ctx: Context) -> Result:
    title = "Dead letters"
    if (r := _db_unavailable(ctx, "dead_letters", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    since = ctx.now - ctx.thresholds.dead_letter_window_h * 3600
    # Requeued dead letters (`panicgw outbox requeue`, schema v2) are pending again: they
    # show in the outbox check, not here.
    cols = {r[1] for r in db.execute("PRAGMA table_info(dead_letters)")}
    live = " AND d.requeued_at IS NULL" if "requeued_at" in cols else ""
    total = db.execute(f"SELECT count(*) FROM dead_letters d WHERE 1{live}").fetchone()[0]
    rows = db.execute(
        "SELECT d.incident_id, d.reason, d.at, o.priority, d.outbox_id FROM dead_letters d "
        f"LEFT JOIN outbox o ON o.id = d.outbox_id WHERE d.at >= ?{live} ORDER BY d.at DESC",
        (since,)).fetchall()
    if not rows:
        return Result("dead_letters", title, PASS,
                      "none" if not total else f"none in the last "
                      f"{ctx.thresholds.dead_letter_window_h:g} h ({total} older)",
                      data={"total": total})
    alarms = [r for r in rows if r[3] == 0]
    latest = rows[0]
    finding = (f"{len(rows)} message(s) rejected permanently by dispatch in the last "
               f"{ctx.thresholds.dead_letter_window_h:g} h ({len(alarms)} alarm(s)); latest "
               f"{latest[0]}: {ctx.redactor.text(str(latest[1]))[:100]}")
    ids = " ".join(str(r[4]) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
    hint = ("Dispatch refused these for good (4xx): `panicgw outbox list --dead` shows each "
            "with its error; fix the cause (payload schema, unknown site at dispatch) with the "
            f"dispatch centre, then `panicgw outbox requeue {ids}` (or `--all-dead`) sends "
            "them again. Alarms among them must be phoned in now.")
    return Result("dead_letters", title, FAIL if alarms else WARN, finding, hint,
                  {"recent": len(rows), "alarms": len(alarms), "total": total,
                   "outbox_ids": [r[4] for r in rows]})


@check("devices")
def check_devices(ctx: Context) -> list[Result]:
    """Silence is judged by panicgw.supervision.silent_for, the daemon's own rule: from the
    latest of last heard, (re)enrollment and, while the daemon runs, its start."""
    from panicgw.supervise.rule import LOST, silent_for

    if (r := _db_unavailable(ctx, "devices.supervision", "Devices heard in time")) is not None:
        return [r]
    db = ctx.db()
    assert db is not None
    grace = ctx.thresholds.supervision_grace_s
    cols = {r[1] for r in db.execute("PRAGMA table_info(devices)")}
    enrolled = "d.enrolled_at" if "enrolled_at" in cols else "d.registered_at"  # schema < v3
    rows = db.execute(
        f"SELECT d.device_id, d.label, s.name, d.supervision_s, {enrolled}, st.last_heard, "
        "st.supervision, st.low_battery, st.battery_mv, st.battery_alarm FROM devices d "
        "JOIN sites s ON s.id = d.site_id LEFT JOIN device_state st ON "
        "st.device_id = d.device_id ORDER BY d.device_id").fetchall()
    uptime = (ctx.status or {}).get("uptime_s")
    started = ctx.now - float(uptime) if isinstance(uptime, (int, float)) else None
    lost: list[str] = []
    never: list[str] = []
    waiting: list[str] = []
    low: list[str] = []
    for dev, label, site, sup_s, enrolled_at, heard, sup_state, lowbat, mv, bat_alarm in rows:
        name = f"0x{dev:08X} {label or ''} @ {site}".replace("  ", " ")
        limit = 2 * sup_s + grace
        silent = silent_for(ctx.now, heard, enrolled_at, started)
        if heard is None:
            if silent > limit or sup_state == LOST:
                never.append(f"{name} (registered {fmt_age(ctx.now - enrolled_at)} ago)")
            else:
                waiting.append(f"{name} (registered {fmt_age(ctx.now - enrolled_at)} ago, "
                               f"reported lost after {fmt_age(limit)} of silence)")
        elif silent > limit or sup_state == LOST:
            lost.append(f"{name} (silent {fmt_age(ctx.now - heard)})")
        if lowbat or bat_alarm:
            low.append(name + (f" ({mv} mV)" if mv else ""))
    out: list[Result] = []
    title = "Devices heard in time"
    heard_ok = len(rows) - len(lost) - len(never) - len(waiting)
    data = {"lost": lost, "never_heard": never, "not_heard_yet": waiting}
    if lost or never:
        items = lost + never
        out.append(Result(
            "devices.supervision", title, FAIL,
            f"{len(items)} of {len(rows)} device(s) silent past supervision: "
            + "; ".join(items[:5]) + (" ..." if len(items) > 5 else ""),
            "Visit the site: check the button's battery and that it still reaches the "
            "gateway (`panictool verify`, `panicgw monitor`); a never-heard device may be "
            "provisioned with another key or region (`panictool rekey`, then "
            "`panictool verify`).", data))
    elif waiting:
        out.append(Result(
            "devices.supervision", title, WARN,
            f"{len(waiting)} of {len(rows)} device(s) registered but never heard yet: "
            + "; ".join(waiting[:5]) + (" ..." if len(waiting) > 5 else "")
            + (f"; {heard_ok} heard in time" if heard_ok else ""),
            "Press TEST on each new button (`panictool verify` at the button, "
            "`panicgw monitor` here) to prove it reaches this gateway.", data))
    else:
        out.append(Result("devices.supervision", title, PASS,
                          f"all {len(rows)} device(s) heard within 2 supervision intervals"
                          " + grace" if rows else "no devices registered", data=data))
    if low:
        out.append(Result("devices.battery", "Device batteries", WARN,
                          f"{len(low)} device(s) report low battery: " + "; ".join(low[:5]),
                          "Replace the batteries at these sites soon (then press TEST).",
                          {"low_battery": low}))
    else:
        out.append(Result("devices.battery", "Device batteries", PASS, "no low battery"))
    return out


LAST_EPOCH_COUNTER = 0xFFFF << 16


@check("counters")
def check_counter_space(ctx: Context) -> Result:
    """Devices at the top of the counter space (docs/protocol.md): at epoch 0xFFFF no RESYNC
    can move a button forward, so its next cold boot leaves it unheard until it is rekeyed."""
    title = "Device counters not exhausted"
    if (r := _db_unavailable(ctx, "devices.counter_space", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    try:
        rows = db.execute(
            "SELECT d.device_id, d.label, s.name, st.replay_highest FROM devices d "
            "JOIN sites s ON s.id = d.site_id JOIN device_state st ON "
            "st.device_id = d.device_id WHERE st.replay_highest >= ? ORDER BY d.device_id",
            (LAST_EPOCH_COUNTER,)).fetchall()
        refused = db.execute("SELECT coalesce(sum(count), 0) FROM rejections WHERE reason = ?",
                             ("counter_exhausted",)).fetchone()[0]
    except sqlite3.Error as e:
        return Result("devices.counter_space", title, WARN, f"cannot read device state: {e}",
                      "Check the database (`panicgw diag --only database`).")
    if not rows:
        return Result("devices.counter_space", title, PASS, "no device at the last epoch")
    names = [f"0x{dev:08X} {label or ''} @ {site} (highest counter 0x{hi:08X})".replace(
        "  ", " ") for dev, label, site, hi in rows]
    first = f"{rows[0][0]:08X}"
    # The Pi's commands find the DB from the default config; name this one when it is not.
    cfg = ""
    if ctx.config_path is not None and ctx.config_path != access.default_config():
        cfg = f" --config {shlex.quote(str(ctx.config_path))}"
    return Result(
        "devices.counter_space", title, FAIL,
        f"{len(rows)} device(s) at the last counter epoch 0xFFFF, so no RESYNC can help them: "
        + "; ".join(names[:5]) + (" ..." if len(names) > 5 else "")
        + (f"; {refused} frame(s) already refused (counter_exhausted)" if refused else ""),
        "Rekey each; a rekey restarts the counter at both ends (a new key makes every old "
        f"frame fail its tag, so its counters can be used again): on the Pi `panicgw devices "
        f"rekey {first} --key-file {first}.key{cfg}`, then with the button on USB "
        f"`panictool rekey --use-key {first}.key`, and delete {first}.key. With the button "
        "on the Pi's USB, `panictool rekey --config "
        f"{shlex.quote(str(ctx.config_path or access.default_config()))}` does both at once.",
        {"devices": names, "refused": refused})


STORM_REASONS = ("bad_tag", "replay", "unknown_device")
REJECTION_HINT = (
    "bad_tag: a button whose key differs from the gateway's. Give both the gateway's key: "
    "`panicgw devices rekey ID --key-file ID.key` here, then `panictool rekey --use-key "
    "ID.key` at the button (or `panictool rekey --gateway-db` on the Pi, button on USB); if "
    "an old export was imported over a newer key, import the current one (`panicgw devices "
    "export` from the gateway that has it). Never `panictool provision --force`: that makes "
    "a new device id. unknown_device: a button not registered here: `panicgw devices import` "
    "its export. Otherwise someone is forging frames. replay: a captured frame re-sent, or a "
    "button whose counter went back. `panicgw monitor` shows which device, live.")


def _rejected_devices(ctx: Context) -> dict[str, dict[str, int]]:
    """Devices (8 hex digits) of the running daemon's recent rejected frames, per reason."""
    if ctx.status is None or not ctx.status_url:
        return {}
    url = ctx.status_url.replace("/v1/status", "/v1/frames?limit=2000")
    try:
        with urllib.request.urlopen(url, timeout=ctx.thresholds.probe_timeout_s) as r:
            doc = json.loads(r.read(8_000_000))
    except (OSError, ValueError, http.client.HTTPException):
        return {}
    out: dict[str, dict[str, int]] = {}
    for f in doc.get("frames", []) if isinstance(doc, dict) else []:
        if (isinstance(f, dict) and f.get("verdict") == "rejected"
                and f.get("reason") in STORM_REASONS and isinstance(f.get("device_id"), int)):
            per = out.setdefault(f"{f['device_id']:08X}", {})
            per[f["reason"]] = per.get(f["reason"], 0) + 1
    return out


def _named_rejection_hint(ctx: Context, named: dict[str, dict[str, int]]) -> str:
    """The fix for each device the rejections name: the command, with its id."""
    db = ctx.db()
    parts = []
    for dev, reasons in sorted(named.items(), key=lambda kv: -sum(kv[1].values()))[:3]:
        gen = None
        if db is not None:
            with contextlib.suppress(sqlite3.Error):
                row = db.execute("SELECT key_gen FROM devices WHERE device_id = ?",
                                 (int(dev, 16),)).fetchone()
                gen = row[0] if row else None
        if "bad_tag" in reasons:
            parts.append(f"{dev} fails its tag ({reasons['bad_tag']}x, gateway key generation "
                         f"{gen if gen is not None else '?'}): `panicgw devices rekey {dev} "
                         f"--key-file {dev}.key`, then `panictool rekey --use-key {dev}.key` "
                         "at the button")
        elif "unknown_device" in reasons:
            parts.append(f"{dev} is not registered ({reasons['unknown_device']}x): `panicgw "
                         "devices import` its export")
        else:
            parts.append(f"{dev} replays old counters ({reasons.get('replay', 0)}x)")
    return "; ".join(parts) + ". " + REJECTION_HINT


@check("rejections")
def check_rejections(ctx: Context) -> Result:
    title = "Rejected frames (bad tags, replays)"
    if ctx.cfg is None:
        return Result("rejections", title, SKIP, "not checked: the configuration is invalid")
    t = ctx.thresholds
    hint = REJECTION_HINT
    st = ctx.status
    named = _rejected_devices(ctx)
    if named:
        hint = _named_rejection_hint(ctx, named)
    if st is not None and isinstance(st.get("rejections"), dict):
        uptime_min = max(float(st.get("uptime_s") or 0) / 60, 1.0)
        counts = {str(k): int(v) for k, v in st["rejections"].items()
                  if isinstance(v, int)}
        hot = {r: n for r, n in counts.items() if r in STORM_REASONS}
        rates = {r: n / uptime_min for r, n in hot.items()}
        worst = max(rates.items(), key=lambda kv: kv[1], default=None)
        finding = ", ".join(f"{r} {n}" for r, n in sorted(counts.items())) or "none"
        data = {"since_start": counts, "uptime_min": round(uptime_min, 1)}
        if worst and worst[1] >= t.storm_rate_warn_per_min and hot[worst[0]] >= t.storm_warn:
            status = FAIL if hot[worst[0]] >= t.storm_fail else WARN
            return Result("rejections", title, status,
                          f"storm: {worst[0]} at {worst[1]:.1f}/min since start "
                          f"({finding})", hint, {**data, "devices": named})
        return Result("rejections", title, PASS, f"since start: {finding}", data=data)
    db = ctx.db()
    if db is None:
        return Result("rejections", title, SKIP, f"not checked: {ctx._db_error}")
    rows = db.execute("SELECT reason, count, last_at FROM rejections").fetchall()
    recent = {r: int(n) for r, n, at in rows
              if r in STORM_REASONS and ctx.now - float(at) <= t.storm_window_s}
    total = ", ".join(f"{r} {n}" for r, n, _ in sorted(rows)) or "none"
    data = {"totals": {r: int(n) for r, n, _ in rows}}
    worst = max(recent.items(), key=lambda kv: kv[1], default=None)
    if worst and worst[1] >= t.storm_warn:
        status = FAIL if worst[1] >= t.storm_fail else WARN
        return Result("rejections", title, status,
                      f"{worst[0]}: {worst[1]} in total, still arriving in the last "
                      f"{fmt_age(t.storm_window_s)} (totals: {total})", hint, data)
    return Result("rejections", title, PASS, f"totals: {total}", data=data)


# -- running ----------------------------------------------------------------------------------


def run_checks(ctx: Context, only: Iterable[str] | None = None) -> list[Result]:
    """Every check (or those named in ``only``), each isolated, findings redacted."""
    wanted = set(only) if only else None
    results: list[Result] = []
    for name, fn in CHECKS:
        if wanted is not None and name not in wanted:
            continue
        try:
            got = fn(ctx)
        except Exception as e:  # a broken check must not hide the others
            got = Result(name, name, FAIL, f"check crashed: {type(e).__name__}: {e}",
                         "Report this with `panicgw diag --bundle diag.tar.gz`.")
        for r in got if isinstance(got, list) else [got]:
            r.finding = ctx.redactor.text(r.finding)
            r.hint = ctx.redactor.text(r.hint)
            r.data = ctx.redactor.data(r.data)
            results.append(r)
    return results


def exit_code(results: Iterable[Result]) -> int:
    """0 all pass, 1 warnings, 2 failures."""
    return max((SEVERITY[r.status] for r in results), default=0)


# -- support bundle -------------------------------------------------------------------------------

BUNDLE_EVENTS = 500
LOG_TAIL_BYTES = 2_000_000


def db_stats(ctx: Context) -> dict[str, Any]:
    """Sizes, row counts and state of the DB, with no keys and no payloads."""
    out: dict[str, Any] = {}
    if ctx.cfg is None:
        return {"error": "configuration invalid"}
    path = ctx.cfg.db_path
    for suffix in ("", "-wal", "-shm"):
        p = Path(str(path) + suffix)
        if p.exists():
            st = p.stat()
            out[f"file{suffix or ''}"] = {"path": str(p), "bytes": st.st_size,
                                          "mode": f"{stat.S_IMODE(st.st_mode):04o}",
                                          "uid": st.st_uid}
    db = ctx.db()
    if db is None:
        out["error"] = ctx._db_error
        return out
    try:
        out["schema_version"] = db.execute("PRAGMA user_version").fetchone()[0]
        out["page_count"] = db.execute("PRAGMA page_count").fetchone()[0]
        out["freelist_count"] = db.execute("PRAGMA freelist_count").fetchone()[0]
        tables = [r[0] for r in db.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        out["rows"] = {t: db.execute(f'SELECT count(*) FROM "{t}"').fetchone()[0]
                       for t in tables}
        out["outbox"] = {s: n for s, n in db.execute(
            "SELECT state, count(*) FROM outbox GROUP BY state")}
        out["rejections"] = [{"reason": r, "count": n, "last_at": a} for r, n, a in
                             db.execute("SELECT reason, count, last_at FROM rejections")]
        out["dead_letters"] = [{"outbox_id": o, "incident_id": i, "reason": r, "at": a}
                               for o, i, r, a in db.execute(
                                   "SELECT outbox_id, incident_id, reason, at FROM dead_letters "
                                   "ORDER BY id DESC LIMIT 200")]
        cols = ("device_id", "label", "site", "kind", "paths", "supervision_s", "firmware",
                "registered_at", "last_heard", "last_path", "last_rssi", "last_snr",
                "battery_mv", "low_battery", "supervision")
        out["devices"] = [dict(zip(cols, r, strict=True)) for r in db.execute(
            "SELECT d.device_id, d.label, s.name, s.kind, d.paths, d.supervision_s, d.firmware, "
            "d.registered_at, st.last_heard, st.last_path, st.last_rssi, st.last_snr, "
            "st.battery_mv, st.low_battery, st.supervision FROM devices d JOIN sites s ON "
            "s.id = d.site_id LEFT JOIN device_state st ON st.device_id = d.device_id")]
    except sqlite3.Error as e:
        out["error"] = f"{e}"
    return out


def _recent_events(ctx: Context, limit: int) -> list[dict[str, Any]]:
    db = ctx.db()
    if db is None:
        return []
    from panicgw.cli.events import query_events

    try:
        return query_events(db, limit=limit)
    except sqlite3.Error:
        return []


def _journal() -> str | None:
    if shutil.which("journalctl") is None:
        return None
    try:
        r = subprocess.run(["journalctl", "-u", "panicgw", "-n", "2000", "--no-pager",
                            "-o", "short-iso"], capture_output=True, text=True, timeout=15)
    except (OSError, subprocess.SubprocessError):
        return None
    return r.stdout if r.returncode == 0 and r.stdout.strip() else None


def _tail(path: Path, nbytes: int) -> str:
    with path.open("rb") as f:
        f.seek(0, os.SEEK_END)
        size = f.tell()
        f.seek(max(0, size - nbytes))
        return f.read().decode("utf-8", "replace")


def redacted_config_text(ctx: Context) -> str:
    """The config as JSON (validated) or, when invalid, the raw file with secret lines masked."""
    if ctx.cfg is not None:
        return json.dumps({"source": ctx.cfg.source,
                           "values": ctx.redactor.data(ctx.cfg.redacted())}, indent=2)
    if ctx.config_path is None:
        return "{}"
    try:
        raw = ctx.config_path.read_text("utf-8", errors="replace")
    except OSError as e:
        return f"# cannot read {ctx.config_path}: {e.strerror}\n"
    lines = []
    for line in raw.splitlines():
        k = line.split("=", 1)[0]
        lines.append(f"{k}= \"{REDACTED}\"" if "=" in line and _secret_name(k.strip())
                     else line)
    return ctx.redactor.text("\n".join(lines) + "\n")


def write_bundle(ctx: Context, results: list[Result], dest: Path) -> list[str]:
    """Write a tar.gz support archive; returns the member names. Every member is redacted
    and then re-scanned: a known secret left anywhere aborts instead of being shipped."""
    import io
    import platform
    import tarfile

    from panicgw import __version__

    members: dict[str, str] = {}
    members["diag.json"] = json.dumps({
        "panicgw": __version__, "host": platform.node(), "at": ctx.now,
        "daemon_running": ctx.running, "exit_code": exit_code(results),
        "results": [r.as_dict() for r in results]}, indent=2, default=str)
    members["config.json"] = redacted_config_text(ctx)
    members["db-stats.json"] = json.dumps(db_stats(ctx), indent=2, default=str)
    members["events.json"] = json.dumps(_recent_events(ctx, BUNDLE_EVENTS), indent=2,
                                        default=str)
    if ctx.status is not None:
        members["daemon-status.json"] = json.dumps(ctx.status, indent=2, default=str)
    members["system.json"] = json.dumps({
        "platform": platform.platform(), "python": platform.python_version(),
        "machine": platform.machine(), "uid": os.geteuid(),
        "loadavg": os.getloadavg() if hasattr(os, "getloadavg") else None}, indent=2)
    journal = _journal()
    if journal:
        members["logs/journal-panicgw.txt"] = journal
    if ctx.cfg is not None and ctx.cfg.data_dir.is_dir():
        for p in sorted(ctx.cfg.data_dir.glob("*.log*"))[:10]:
            with contextlib.suppress(OSError):
                members[f"logs/{p.name}"] = _tail(p, LOG_TAIL_BYTES)
    for name in list(members):
        text = members[name]
        if name.endswith(".json"):
            with contextlib.suppress(ValueError):
                text = json.dumps(ctx.redactor.data(json.loads(text)), indent=2, default=str)
        members[name] = ctx.redactor.text(text)
    for name, text in members.items():
        for s in ctx.redactor.secrets:
            if s in text:
                raise RuntimeError(f"refusing to write bundle: {name} still holds a secret")
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as raw, tarfile.open(fileobj=raw, mode="w:gz") as tar:
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(ctx.now))
        for name, text in members.items():
            data = text.encode("utf-8")
            info = tarfile.TarInfo(f"panicgw-diag-{stamp}/{name}")
            info.size = len(data)
            info.mtime = int(ctx.now)
            info.mode = 0o600
            tar.addfile(info, io.BytesIO(data))
    return list(members)
