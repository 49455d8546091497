"""`panictool airtime`: which spreading factors a region allows for our frames."""

import json

import typer
from rich.console import Console
from rich.table import Table

from panicproto import airtime as at
from panicproto import frames


def airtime(
    region: str = typer.Option(
        "AS923-2", "--region", help="AS923-2 (Indonesia), AS923, EU868, US915."
    ),
    payload: int = typer.Option(
        frames.UPLINK_LEN, "--bytes", min=1, max=255, help="Frame size in bytes (uplink is 19)."
    ),
    bw_khz: int = typer.Option(125, "--bw", help="Bandwidth in kHz (125, 250 or 500)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON for scripts."),
) -> None:
    """Time on air per spreading factor, and whether the region's dwell limit allows it.

    Also shows how many such frames per hour the duty-cycle budget permits.
    """
    try:
        reg = at.region(region)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2) from None
    if bw_khz not in (125, 250, 500):
        typer.echo("error: --bw must be 125, 250 or 500", err=True)
        raise typer.Exit(2)
    bw = bw_khz * 1000
    rows = []
    for sf in range(7, 13):
        ms = at.time_on_air_ms(payload, sf, bw)
        per_hour = int(reg.duty * 3600_000 // ms) if reg.duty else None
        rows.append({"sf": sf, "airtime_ms": round(ms, 1), "allowed": reg.allows(payload, sf, bw),
                     "frames_per_hour": per_hour})
    if as_json:
        typer.echo(json.dumps({"region": reg.name, "bytes": payload, "bw_khz": bw_khz,
                               "dwell_ms": reg.dwell_ms, "duty": reg.duty, "rows": rows}))
        return
    dwell = f"{reg.dwell_ms:.0f} ms dwell" if reg.dwell_ms else "no dwell limit"
    duty = f"{reg.duty:.0%} duty cycle" if reg.duty else "no duty-cycle limit"
    table = Table(title=f"{reg.name}: {payload}-byte frame, {bw_khz} kHz, {dwell}, {duty}")
    for col in ("SF", "time on air", "allowed", "frames/hour"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(str(r["sf"]), f"{r['airtime_ms']:.1f} ms",
                      "yes" if r["allowed"] else "[red]no[/red]",
                      "unlimited" if r["frames_per_hour"] is None else str(r["frames_per_hour"]))
    Console().print(table)
