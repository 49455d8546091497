"""``devices`` and ``counters``: every registered button was heard within its supervision
interval, none reports a low battery, and none is at the top of its counter space."""

from __future__ import annotations

import shlex

from panicgw import access
from panicgw.diag.context import FAIL, PASS, WARN, Context, Result, skip_no_db
from panicgw.diag.wording import fmt_age
from panicgw.store.inspect import ReadError

LAST_EPOCH_COUNTER = 0xFFFF << 16


def check_devices(ctx: Context) -> list[Result]:
    """Silence is judged by panicgw.supervise.rule.silent_for, the daemon's own rule: from
    the latest of last heard, (re)enrollment and, while the daemon runs, its start."""
    from panicgw.supervise.rule import LOST, silent_for

    if (r := skip_no_db(ctx, "devices.supervision", "Devices heard in time")) is not None:
        return [r]
    db = ctx.db()
    assert db is not None
    grace = ctx.thresholds.supervision_grace_s
    rows = db.watched()
    uptime = (ctx.status or {}).get("uptime_s")
    started = ctx.now - float(uptime) if isinstance(uptime, (int, float)) else None
    lost: list[str] = []
    never: list[str] = []
    waiting: list[str] = []
    low: list[str] = []
    for dev in rows:
        name = f"0x{dev.device_id:08X} {dev.label or ''} @ {dev.site}".replace("  ", " ")
        limit = 2 * dev.supervision_s + grace
        silent = silent_for(ctx.now, dev.last_heard, dev.enrolled_at, started)
        if dev.last_heard is None:
            if silent > limit or dev.supervision == LOST:
                never.append(f"{name} (registered {fmt_age(ctx.now - dev.enrolled_at)} ago)")
            else:
                waiting.append(f"{name} (registered {fmt_age(ctx.now - dev.enrolled_at)} ago, "
                               f"reported lost after {fmt_age(limit)} of silence)")
        elif silent > limit or dev.supervision == LOST:
            lost.append(f"{name} (silent {fmt_age(ctx.now - dev.last_heard)})")
        if dev.low_battery or dev.battery_alarm:
            low.append(name + (f" ({dev.battery_mv} mV)" if dev.battery_mv else ""))
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


def check_counter_space(ctx: Context) -> Result:
    """Devices at the top of the counter space (docs/protocol.md): at epoch 0xFFFF no RESYNC
    can move a button forward, so its next cold boot leaves it unheard until it is rekeyed."""
    title = "Device counters not exhausted"
    if (r := skip_no_db(ctx, "devices.counter_space", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    try:
        rows = db.at_counter(LAST_EPOCH_COUNTER)
        refused = db.rejected("counter_exhausted")
    except ReadError as e:
        return Result("devices.counter_space", title, WARN, f"cannot read device state: {e}",
                      "Check the database (`panicgw diag --only database`).")
    if not rows:
        return Result("devices.counter_space", title, PASS, "no device at the last epoch")
    names = [f"0x{r.device_id:08X} {r.label or ''} @ {r.site} (highest counter "
             f"0x{r.replay_highest:08X})".replace("  ", " ") for r in rows]
    first = f"{rows[0].device_id:08X}"
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
