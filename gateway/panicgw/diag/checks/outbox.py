"""``outbox`` and ``dead_letters``: messages waiting for dispatch, and those it refused for
good. An alarm waiting past a minute is a FAIL: the police do not have it."""

from __future__ import annotations

from panicgw.diag.context import FAIL, PASS, WARN, Context, Result, skip_no_db
from panicgw.diag.wording import fmt_age


def check_outbox(ctx: Context) -> Result:
    title = "Outbox backlog"
    if (r := skip_no_db(ctx, "outbox", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    t = ctx.thresholds
    n, oldest, na, oldest_alarm, err = db.backlog()
    last_err = f"; last error: {ctx.redactor.text(err)[:120]}" if err is not None else ""
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


def check_dead_letters(ctx: Context) -> Result:
    title = "Dead letters"
    if (r := skip_no_db(ctx, "dead_letters", title)) is not None:
        return r
    db = ctx.db()
    assert db is not None
    window_h = ctx.thresholds.dead_letter_window_h
    # Requeued dead letters (`panicgw outbox requeue`) are pending again: they show in the
    # outbox check, not here.
    total, rows = db.dead_letters_since(ctx.now - window_h * 3600)
    if not rows:
        return Result("dead_letters", title, PASS,
                      "none" if not total else f"none in the last {window_h:g} h "
                      f"({total} older)", data={"total": total})
    alarms = [r for r in rows if r.priority == 0]
    latest = rows[0]
    finding = (f"{len(rows)} message(s) rejected permanently by dispatch in the last "
               f"{window_h:g} h ({len(alarms)} alarm(s)); latest "
               f"{latest.incident_id}: {ctx.redactor.text(str(latest.reason))[:100]}")
    ids = " ".join(str(r.outbox_id) for r in rows[:10]) + (" ..." if len(rows) > 10 else "")
    hint = ("Dispatch refused these for good (4xx): `panicgw outbox list --dead` shows each "
            "with its error; fix the cause (payload schema, unknown site at dispatch) with the "
            f"dispatch centre, then `panicgw outbox requeue {ids}` (or `--all-dead`) sends "
            "them again. Alarms among them must be phoned in now.")
    return Result("dead_letters", title, FAIL if alarms else WARN, finding, hint,
                  {"recent": len(rows), "alarms": len(alarms), "total": total,
                   "outbox_ids": [r.outbox_id for r in rows]})
