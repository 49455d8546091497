"""``sia``: each ``[[sia]]`` receiving centre (DC-09) as the running daemon sees it.

Only the daemon knows the link's state (link tests, the last answer, the receiver's clock
from its NAKs) and which alarms the receiver refused, so this reads its status rather than
probing (`panicgw sia test` probes, with the exchange shown). A failed link or a refused
alarm means alarms do not reach that centre: FAIL with what to do.
"""

from __future__ import annotations

from typing import Any

from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result
from panicgw.diag.wording import fmt_age

CLOCK_WARN_S = 60.0


def _route_stats(ctx: Context, name: str) -> dict[str, Any] | None:
    for r in (ctx.status or {}).get("sia") or []:
        if isinstance(r, dict) and r.get("route") == f"sia:{name}":
            return r
    return None


def _link(ctx: Context, name: str, st: dict[str, Any]) -> Result:
    cid, title = f"sia.{name}", f"DC-09 receiver {name}"
    box = st.get("outbox") if isinstance(st.get("outbox"), dict) else {}
    pending, alarms = int(box.get("pending") or 0), int(box.get("pending_alarms") or 0)
    backlog = f"{pending} message(s) waiting on sia:{name} ({alarms} alarm(s))"
    data = {"route": f"sia:{name}", "link_ok": st.get("link_ok"), "active": st.get("active"),
            "pending": pending, "pending_alarms": alarms,
            "alarms_refused": st.get("alarms_refused") or 0}
    if st.get("link_ok") is False:
        since = st.get("link_down_since")
        age = f" for {fmt_age(ctx.now - since)}" if isinstance(since, int | float) else ""
        return Result(cid, title, FAIL,
                      f"link down{age}: no receiver answers ({st.get('last_error') or '?'}); "
                      f"{backlog}",
                      f"Run `panicgw sia test --name {name}` to see the exchange; check that "
                      "the centre's receiver runs and that host, port, protocol and the "
                      "firewall are right. Alarms are kept and sent once it answers; phone "
                      "urgent ones in.", data)
    refused = int(st.get("alarms_refused") or 0)
    if refused and alarms:
        return Result(cid, title, FAIL,
                      f"the receiver refused {refused} alarm attempt(s) with DUH (last: "
                      f"{st.get('last_alarm_refused') or '?'}); {backlog}",
                      "It does not understand our messages: check the account, format "
                      "(SIA-DCS/ADM-CID, xdata) and key with the centre (docs/sia.md "
                      "sections 3-4, `panicgw sia test`). The alarms are kept and retried; "
                      "phone them in.", data)
    if refused:
        return Result(cid, title, WARN,
                      f"the receiver refused {refused} alarm attempt(s) with DUH earlier "
                      f"(last: {st.get('last_alarm_refused') or '?'}); none waits now",
                      "Check the account and format with the centre so it does not recur.",
                      data)
    if st.get("link_ok") is None:
        return Result(cid, title, PASS, f"no exchange yet ({st.get('active')}); {backlog}",
                      data=data)
    return Result(cid, title, PASS, f"link up ({st.get('active')}); {backlog}", data=data)


def _clock(name: str, st: dict[str, Any]) -> Result | None:
    worst = None
    for ep in st.get("endpoints") or []:
        off = ep.get("clock_offset_s") if isinstance(ep, dict) else None
        if isinstance(off, int | float) and (worst is None or abs(off) > abs(worst[1])):
            worst = (ep.get("endpoint"), float(off))
    if worst is None or abs(worst[1]) <= CLOCK_WARN_S:
        return None
    return Result(f"sia.{name}.clock", f"DC-09 receiver {name}: clock", WARN,
                  f"{worst[0]}'s clock is {worst[1]:+.0f} s from ours (from its NAK); "
                  "messages are stamped with its time meanwhile",
                  "Check this gateway's clock (`timedatectl`: NTP synchronised?); if ours "
                  "is right, tell the centre their receiver's clock is off.",
                  {"endpoint": worst[0], "clock_offset_s": worst[1]})


def check_sia(ctx: Context) -> list[Result]:
    if ctx.cfg is None:
        return [Result("sia", "DC-09 receivers", SKIP,
                       "not checked: the configuration is invalid")]
    if not ctx.cfg.sia:
        return [Result("sia", "DC-09 receivers", SKIP, "no [[sia]] receiver configured")]
    out: list[Result] = []
    for r in ctx.cfg.sia:
        cid, title = f"sia.{r.name}", f"DC-09 receiver {r.name}"
        if not ctx.running:
            out.append(Result(cid, title, SKIP, "the daemon is not running: link state "
                              f"unknown (`panicgw sia test --name {r.name}` probes it)"))
            continue
        st = _route_stats(ctx, r.name)
        if st is None:
            out.append(Result(cid, title, WARN, "the running daemon has no route for it: "
                              "it started before this receiver was configured",
                              "Restart panicgw (`sudo systemctl restart panicgw`)."))
            continue
        out.append(_link(ctx, r.name, st))
        clock = _clock(r.name, st)
        if clock is not None:
            out.append(clock)
    return out
