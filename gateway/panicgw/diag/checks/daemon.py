"""``daemon``: is the gateway running (its status API answers)? Everything else is judged
differently when it is not: nothing receives, stores or forwards alarms."""

from __future__ import annotations

from panicgw.diag.context import FAIL, PASS, Context, Result, skip_no_config
from panicgw.diag.wording import fmt_age


def check_daemon(ctx: Context) -> Result:
    title = "Gateway daemon"
    if (r := skip_no_config(ctx, "daemon", title)) is not None:
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
