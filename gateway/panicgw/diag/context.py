"""What every check shares: the verdicts, the thresholds, one result line, and the context
(config, the running daemon's status, the DB read-only, the redactor, the time).

The context is built once and never raises: a missing or invalid config, a stopped daemon
or an unreadable DB are findings of the checks, not errors of the run.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from panicgw import access
from panicgw import config as gwconfig
from panicgw.diag.redact import Redactor, secrets_in_toml
from panicgw.diag.status_api import fetch_status
from panicgw.radio import FREQUENCY_TOLERANCE_MHZ
from panicgw.store import StoreError
from panicgw.store.inspect import Inspector, ReadError

PASS, WARN, FAIL, SKIP = "PASS", "WARN", "FAIL", "SKIP"
SEVERITY = {PASS: 0, SKIP: 0, WARN: 1, FAIL: 2}


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
    frequency_tolerance_mhz: float = FREQUENCY_TOLERANCE_MHZ

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


def exit_code(results: Iterable[Result]) -> int:
    """0 all pass, 1 warnings, 2 failures."""
    return max((SEVERITY[r.status] for r in results), default=0)


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
    db_error: str | None = None  # why db() is None
    _db: Inspector | None = None

    @property
    def running(self) -> bool:
        return self.status is not None

    def db(self) -> Inspector | None:
        """The gateway DB read-only (None when missing or unreadable, :attr:`db_error`
        says why), opened like every tool opens it: never created, schema checked."""
        if self._db is not None or self.db_error is not None or self.cfg is None:
            return self._db
        path = self.cfg.db_path
        if not path.exists():
            self.db_error = f"no database at {path}"
            return None
        try:
            self._db = Inspector.open(path)
        except (StoreError, ReadError) as e:
            self.db_error = f"cannot open {path} read-only: {e}"
        return self._db

    def close(self) -> None:
        if self._db is not None:
            self._db.close()
            self._db = None


def load_context(config_path: Path | None, thresholds: Thresholds | None = None,
                 now: float | None = None) -> Context:
    """Read the config (never raising) and ask the daemon's status API if it answers.
    Without ``config_path``: the installed gateway's (``$PANICGW_CONFIG`` or
    ``/etc/panicgw/gateway.toml``), as for every other tool."""
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
    for receiver in ctx.cfg.sia:  # the DC-09 AES keys, as hex or as the text form
        if receiver.key:
            for form in (receiver.key.hex(), receiver.key.hex().upper(),
                         receiver.key.decode("latin-1")):
                ctx.redactor.add(form)
    ctx.status, ctx.status_error, ctx.status_url = fetch_status(
        ctx.cfg, ctx.thresholds.probe_timeout_s)
    db = ctx.db()
    if db is not None:
        with contextlib.suppress(ReadError):
            for key in db.device_keys():
                ctx.redactor.add(key)
    return ctx


def skip_no_config(ctx: Context, cid: str, title: str) -> Result | None:
    """A SKIP line for a check that needs the config, when it is invalid."""
    if ctx.cfg is None:
        return Result(cid, title, SKIP, "not checked: the configuration is invalid")
    return None


def skip_no_db(ctx: Context, cid: str, title: str) -> Result | None:
    """A SKIP line for a check that needs the DB, when it cannot be read."""
    if (r := skip_no_config(ctx, cid, title)) is not None:
        return r
    if ctx.db() is None:
        return Result(cid, title, SKIP, f"not checked: {ctx.db_error}")
    return None
