"""`panicconsole sites`: the sites and buttons the console knows before their first alarm."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from panicconsole import sites as sites_mod
from panicconsole.alarms import audit
from panicconsole.common import CONFIG_OPTION, emit_json, fail, load_config, open_db, transaction

app = typer.Typer(help="Import and list sites (shops, homes) and their buttons.",
                  no_args_is_help=True)


@app.command("import")
def import_(file: Path = typer.Argument(..., exists=True, dir_okay=False,
                                        help="A gateway registry export (panic-button-"
                                             "registry/1) or dispatch bodies (JSON/JSON lines)."),
            config: Path = CONFIG_OPTION,
            json_out: bool = typer.Option(False, "--json", help="Print counts as JSON.")) -> None:
    """Register sites and buttons from the file an installer's `panictool provision
    --export` wrote (the same file `panicgw devices import` reads), or from recorded
    dispatch bodies (`panicgw dispatch-server --record` lines). Device keys in an export are
    never read into the console. Sites also register themselves with their first alarm.

    Exit codes: 0 imported, 2 the file is not usable (the message names the record/field).
    """
    cfg = load_config(config)
    try:
        kind, entries = sites_mod.read(file)
    except sites_mod.SitesError as e:
        fail(str(e))
    conn = open_db(cfg, create=True)
    try:
        with transaction(conn):
            now = time.time()
            counts = sites_mod.store(conn, "registry" if kind == "registry" else "dispatch",
                                     entries, now)
            audit.record(conn, now, {"username": "cli", "role": "admin"}, "sites_import", None,
                         f"{file.name} ({kind}): {counts['sites']} sites, "
                         f"{counts['devices']} devices")
    finally:
        conn.close()
    if json_out:
        emit_json({"source": kind, **counts})
    else:
        typer.echo(f"imported {counts['sites']} sites and {counts['devices']} buttons from "
                   f"{'a registry export' if kind == 'registry' else 'dispatch bodies'}")


@app.command("list")
def list_(search: str = typer.Option("", "--search", "-s", help="Part of a name or address."),
          limit: int = typer.Option(50, "--limit", min=1, max=100000),
          config: Path = CONFIG_OPTION,
          json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Sites with their coordinates, contact and buttons."""
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        like = f"%{search}%"
        rows = [dict(r) for r in conn.execute(
            "SELECT s.*, (SELECT group_concat(device_id || ' ' || label, ', ') FROM devices d "
            "WHERE d.site_key = s.site_key) AS buttons FROM sites s WHERE s.name LIKE ? OR "
            "s.address LIKE ? ORDER BY s.name LIMIT ?", (like, like, limit))]
        total = conn.execute("SELECT COUNT(*) FROM sites").fetchone()[0]
    finally:
        conn.close()
    if json_out:
        emit_json({"total": total, "sites": rows})
        return
    for r in rows:
        typer.echo(f"{r['name']} ({r['kind']}), {r['address']}  [{r['lat']}, {r['lon']}]  "
                   f"{r['contact']} {r['phone']}  buttons: {r['buttons'] or '-'}")
    typer.echo(f"{len(rows)} of {total} sites")
