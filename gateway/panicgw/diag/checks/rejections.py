"""``rejections``: storms of frames that fail their tag, replay old counters or come from
unknown devices; a button with the wrong key, an unregistered one, or a forger. With the
daemon running its recent frames name the devices, so the hint names each fix."""

from __future__ import annotations

import contextlib

from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result
from panicgw.diag.status_api import get_json
from panicgw.diag.wording import fmt_age
from panicgw.store.inspect import ReadError

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
    doc = get_json(ctx.status_url.replace("/v1/status", "/v1/frames?limit=2000"),
                   ctx.thresholds.probe_timeout_s, 8_000_000)
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
            with contextlib.suppress(ReadError):
                gen = db.key_gen(int(dev, 16))
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
        return Result("rejections", title, SKIP, f"not checked: {ctx.db_error}")
    rows = db.rejections()
    recent = {r: n for r, n, at in rows
              if r in STORM_REASONS and ctx.now - float(at) <= t.storm_window_s}
    total = ", ".join(f"{r} {n}" for r, n, _ in sorted(rows)) or "none"
    data = {"totals": {r: n for r, n, _ in rows}}
    worst = max(recent.items(), key=lambda kv: kv[1], default=None)
    if worst and worst[1] >= t.storm_warn:
        status = FAIL if worst[1] >= t.storm_fail else WARN
        return Result("rejections", title, status,
                      f"{worst[0]}: {worst[1]} in total, still arriving in the last "
                      f"{fmt_age(t.storm_window_s)} (totals: {total})", hint, data)
    return Result("rejections", title, PASS, f"totals: {total}", data=data)
