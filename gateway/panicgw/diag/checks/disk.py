"""``disk`` (in the ``database`` group): free space where the DB lives; a full disk stops
the DB from accepting alarms."""

from __future__ import annotations

import shutil
from pathlib import Path

from panicgw.diag.context import FAIL, PASS, WARN, Context, Result


def check_disk(ctx: Context, data_dir: Path) -> Result:
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
