"""`panicconsole audit`: the append-only record of who did what, as CSV; and the dispatch
log (every request gateways made, with the verdict)."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path

import typer

from panicconsole.alarms import audit
from panicconsole.common import CONFIG_OPTION, emit_json, fail, load_config, open_db

app = typer.Typer(help="Export the audit trail; read the dispatch log.", no_args_is_help=True)


def _when(text: str | None, name: str) -> float | None:
    if not text:
        return None
    try:
        d = dt.datetime.fromisoformat(text)
    except ValueError:
        fail(f"{name} must be a date or time like 2024-05-01 or 2024-05-01T08:00")
    if d.tzinfo is None:
        d = d.astimezone()
    return d.timestamp()


@app.command("export")
def export(since: str = typer.Option(None, "--since", help="From this date/time (local)."),
           until: str = typer.Option(None, "--until", help="Before this date/time (local)."),
           out: Path = typer.Option(None, "--out", "-o", dir_okay=False,
                                    help="Write to this file (default: standard output)."),
           config: Path = CONFIG_OPTION) -> None:
    """The audit trail as CSV (seq, time_utc, user, role, action, alarm_id, detail, remote):
    sign-ins, take/take over, steps, notes, closes, refusals, escalations, admin changes."""
    cfg = load_config(config)
    lo, hi = _when(since, "--since") or 0.0, _when(until, "--until") or 1e12
    conn = open_db(cfg)
    try:
        rows = conn.execute("SELECT * FROM audit WHERE at >= ? AND at < ? ORDER BY seq",
                            (lo, hi)).fetchall()
    finally:
        conn.close()
    text = audit.to_csv(rows)
    if out is None:
        sys.stdout.write(text)
    else:
        out.write_text(text, encoding="utf-8")
        typer.echo(f"wrote {len(rows)} rows to {out}", err=True)


@app.command("dispatch-log")
def dispatch_log(limit: int = typer.Option(50, "--limit", min=1, max=100000),
                 refused: bool = typer.Option(False, "--refused", help="Only refusals."),
                 config: Path = CONFIG_OPTION,
                 json_out: bool = typer.Option(False, "--json", help="Print as JSON lines.")
                 ) -> None:
    """What gateways posted, newest first: status, verdict (accepted, duplicate, bad_token,
    bad_signature, schema...), gateway and why a request was refused. The first place to
    look when a gateway's `panicgw diag` says dispatch refuses it."""
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        rows = conn.execute(
            "SELECT id, at, status, verdict, idempotency_key, gateway, attempt, remote, errors "
            "FROM receipts WHERE (? = 0 OR status >= 300) ORDER BY id DESC LIMIT ?",
            (int(refused), limit)).fetchall()
    finally:
        conn.close()
    if json_out:
        for r in rows:
            typer.echo(json.dumps(dict(r) | {"errors": json.loads(r["errors"])}))
        return
    for r in rows:
        when = dt.datetime.fromtimestamp(r["at"]).strftime("%Y-%m-%d %H:%M:%S")
        errs = "; ".join(json.loads(r["errors"]))
        typer.echo(f"{when} {r['status']} {r['verdict']:<18} gw={r['gateway'] or '-'} "
                   f"from {r['remote']} {errs}")
    if not rows:
        emit_json([]) if json_out else typer.echo("no requests yet")
