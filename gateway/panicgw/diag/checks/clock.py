"""``clock``: a Pi has no battery clock, so a clock before this software was built, or
behind the DB's newest record, is wrong, and so is every event time taken with it."""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import time
from pathlib import Path

from panicgw.diag.context import FAIL, PASS, WARN, Context, Result
from panicgw.diag.wording import fmt_age
from panicgw.store.inspect import ReadError

# The earliest date this code can run at: a clock before it is certainly wrong (a Pi without
# RTC and without NTP boots in 1970 or at its last fake-hwclock save).
BUILD_FLOOR = 1795478400.0  # 2026-11-25T00:00:00Z
PACKAGE = Path(__file__).resolve().parents[2]  # panicgw, all its folders


def build_time() -> float:
    """When this panicgw was built/installed: newest of its files' mtimes, at least the floor."""
    newest = BUILD_FLOOR
    with contextlib.suppress(OSError):
        for p in PACKAGE.rglob("*.py"):
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
        with contextlib.suppress(ReadError):
            newest = db.newest_record_time()
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
