"""The support bundle (``panicgw diag --bundle``): what a maintainer needs to help from afar
(results, config, DB statistics, recent events, logs) in one tar.gz, with every secret out.

Every member is redacted and then re-scanned for every known secret: one left anywhere
aborts the bundle instead of shipping it.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import platform
import shutil
import stat
import subprocess
import tarfile
import time
from pathlib import Path
from typing import Any

from panicgw.diag.context import Context, Result, exit_code
from panicgw.diag.redact import REDACTED, secret_name
from panicgw.store.inspect import ReadError

BUNDLE_EVENTS = 500
LOG_TAIL_BYTES = 2_000_000


def db_stats(ctx: Context) -> dict[str, Any]:
    """Sizes, modes, row counts and state of the DB, with no keys and no payloads."""
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
        out["error"] = ctx.db_error
        return out
    try:
        out.update(db.stats())
    except ReadError as e:
        out["error"] = f"{e}"
    return out


def _recent_events(ctx: Context, limit: int) -> list[dict[str, Any]]:
    db = ctx.db()
    if db is None:
        return []
    try:
        return db.events(limit)
    except ReadError:
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
        lines.append(f"{k}= \"{REDACTED}\"" if "=" in line and secret_name(k.strip())
                     else line)
    return ctx.redactor.text("\n".join(lines) + "\n")


def _members(ctx: Context, results: list[Result]) -> dict[str, str]:
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
    return members


def write_bundle(ctx: Context, results: list[Result], dest: Path) -> list[str]:
    """Write a tar.gz support archive; returns the member names. Every member is redacted
    and then re-scanned: a known secret left anywhere aborts instead of being shipped."""
    members = _members(ctx, results)
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
