"""``database``: the gateway DB is there, sound (SQLite's integrity check), private (it
holds device keys) and writable by the service user, with room on its disk."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from panicgw.diag.checks.disk import check_disk
from panicgw.diag.context import FAIL, PASS, SKIP, Context, Result
from panicgw.store.inspect import ReadError


def _writable_for_owner(path: Path) -> bool:
    """Can the service user write ``path``? As root (which may write anything) judge by the
    owner's permission bits, because the daemon runs as the owner, not as root."""
    if os.geteuid() != 0:
        return os.access(path, os.W_OK)
    st = path.stat()
    return bool(st.st_mode & stat.S_IWUSR)


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
        out.append(Result("db.integrity", "Database integrity", FAIL, str(ctx.db_error),
                          "The file may be corrupt or not a gateway DB; stop panicgw, keep a "
                          "copy, and restore from backup."))
    else:
        try:
            rows, version = db.integrity(20)
        except ReadError as e:
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
    out.append(_permissions(path, data_dir))
    out.append(check_disk(ctx, data_dir))
    return out


def _permissions(path: Path, data_dir: Path) -> Result:
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
    return Result("db.permissions", "Database permissions", status,
                  "; ".join(problems) if problems else f"{path.name} mode {mode:04o}, "
                  "file and directory writable",
                  " ".join(hints))
