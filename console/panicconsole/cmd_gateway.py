"""`panicconsole gateway`: the gateways that report here, and where they stand on the map."""

from __future__ import annotations

import time
from pathlib import Path

import typer

from panicconsole.alarms import audit, feed, views
from panicconsole.common import (
    CONFIG_OPTION,
    EXIT_FAILED,
    emit_json,
    fail,
    load_config,
    open_db,
    transaction,
)

app = typer.Typer(help="Gateways: last check-in, trouble, map position.", no_args_is_help=True)


@app.command("list")
def list_(config: Path = CONFIG_OPTION,
          json_out: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Every gateway heard from: last message, last check-in, bridge trouble, silence."""
    cfg = load_config(config)
    conn = open_db(cfg)
    try:
        gws = views.gateways(conn)
    finally:
        conn.close()
    if json_out:
        emit_json(gws)
        return
    now = time.time()
    for g in gws:
        state = ("SILENT" if g["silent"] else "BRIDGE MISSING" if g["bridge_trouble"] else "ok")
        ci = f"{(now - g['last_checkin']) / 60:.0f} min ago" if g["last_checkin"] else "never"
        typer.echo(f"{g['gateway_id']:<20} {state:<15} last check-in {ci}, "
                   f"{g['supervision_lost']} buttons lost  {g['name']}")
    if not gws:
        typer.echo("no gateway has posted yet")


@app.command("set")
def set_(gateway_id: str = typer.Argument(..., help="The gateway's [gateway] id."),
         name: str = typer.Option(None, "--name", help="A name operators recognise."),
         lat: float = typer.Option(None, "--lat", min=-90.0, max=90.0,
                                   help="Where it stands (WGS 84), for the map."),
         lon: float = typer.Option(None, "--lon", min=-180.0, max=180.0),
         config: Path = CONFIG_OPTION) -> None:
    """Name a gateway and place it on the map (otherwise it is drawn at the centre of the
    sites it reported). A gateway not heard from yet is added, so its silence is noticed
    from the start. Exit 2: bad input."""
    if (lat is None) != (lon is None):
        fail("--lat and --lon go together")
    if name is None and lat is None:
        fail("nothing to set: give --name and/or --lat/--lon")
    cfg = load_config(config)
    conn = open_db(cfg, create=True)
    try:
        with transaction(conn):
            now = time.time()
            conn.execute("INSERT INTO gateways (gateway_id, first_seen, last_seen) VALUES "
                         "(?, ?, ?) ON CONFLICT(gateway_id) DO NOTHING", (gateway_id, now, now))
            if name is not None:
                conn.execute("UPDATE gateways SET name = ? WHERE gateway_id = ?",
                             (name, gateway_id))
            if lat is not None:
                conn.execute("UPDATE gateways SET lat = ?, lon = ? WHERE gateway_id = ?",
                             (lat, lon, gateway_id))
            view = views.gateway_view(conn, gateway_id)
            if view is None:
                raise typer.Exit(EXIT_FAILED)
            feed.change(conn, now, "gateway", view)
            audit.record(conn, now, {"username": "cli", "role": "admin"}, "gateway_set", None,
                         f"{gateway_id}: name={name!r} lat={lat} lon={lon}")
    finally:
        conn.close()
    typer.echo(f"{gateway_id} updated")
