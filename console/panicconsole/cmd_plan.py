"""`panicconsole plan`: the action plans operators follow (per site and event kind)."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from panicconsole import plans as plans_mod
from panicconsole.alarms import audit
from panicconsole.common import CONFIG_OPTION, emit_json, fail, load_config, open_db, transaction

app = typer.Typer(help="Action plans: the numbered steps of each kind of alarm.",
                  no_args_is_help=True)


@app.command("list")
def list_(config: Path = CONFIG_OPTION,
          json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every plan in force: precinct-wide (site *), per site, and the built-in defaults."""
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        plans = plans_mod.listing(conn)
    finally:
        conn.close()
    if json_out:
        emit_json(plans)
        return
    for p in plans:
        where = "every site" if p["site"] == "*" else f"{p['site']} ({p['address']})"
        typer.echo(f"{p['event']} - {where} [{p['source']}]")
        for i, s in enumerate(p["steps"], 1):
            typer.echo(f"  {i}. {s['en']}")


@app.command("import")
def import_(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                        help="TOML with [[plan]] tables (see docs/console.md)."),
            config: Path = CONFIG_OPTION,
            json_out: bool = typer.Option(False, "--json", help="Print what was saved as JSON."),
            ) -> None:
    """Save plans from a TOML file; each [[plan]] has event, steps and optionally site
    (a site's name; add address when two sites share it). A site's plan replaces the
    precinct's for that site; plans apply to lines opened from now on.

    Example: [[plan]] event = "panic", steps = ["Send the nearest unit", ...]. A step may be
    a table {en = "...", id = "..."} for both languages. Exit 2: the file names the problem.
    """
    cfg = load_config(config)
    try:
        plans = plans_mod.read_file(file)
    except plans_mod.PlanError as e:
        fail(str(e))
    conn = open_db(cfg, create=True)
    saved = []
    try:
        with transaction(conn):
            now = time.time()
            for p in plans:
                key = (plans_mod.resolve_site(conn, p["site"], p["address"]) if p["site"]
                       else "*")
                plans_mod.save(conn, key, p["event"], p["steps"], "cli", now)
                saved.append({"event": p["event"], "site": p["site"] or "*",
                              "steps": len(p["steps"])})
            audit.record(conn, now, {"username": "cli", "role": "admin"}, "plan_import", None,
                         f"{file.name}: {len(saved)} plans")
    except plans_mod.PlanError as e:
        fail(str(e))
    finally:
        conn.close()
    if json_out:
        emit_json(saved)
    else:
        for s in saved:
            typer.echo(f"saved {s['event']} plan for {s['site']} ({s['steps']} steps)")
