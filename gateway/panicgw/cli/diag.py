"""`panicgw diag`: the technician's checklist (docs/diagnostics.md explains every line)."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from panicgw import diag

EXIT_USAGE = 3  # 0/1/2 are the checklist's PASS/WARN/FAIL
STYLE = {diag.PASS: "bold green", diag.WARN: "bold yellow", diag.FAIL: "bold red",
         diag.SKIP: "dim"}


def diag_cmd(
    config: Path = typer.Option(None, "--config", "-c", envvar="PANICGW_CONFIG",
                                help="Gateway TOML file (the one `panicgw run` uses)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for scripts."),
    bundle: Path = typer.Option(
        None, "--bundle", metavar="FILE",
        help="Also write a support archive (tar.gz: results, redacted config, DB stats, "
        "recent events and logs). Keys, tokens, secrets and passwords are removed."),
    only: list[str] = typer.Option(
        None, "--only", help="Run only these check groups (repeatable): "
        + ", ".join(name for name, _ in diag.CHECKS) + "."),
    setting: list[str] = typer.Option(
        None, "--set", metavar="NAME=VALUE",
        help="Override a threshold, e.g. --set disk_free_warn_mb=2000 (see "
        "docs/diagnostics.md for the names and defaults)."),
) -> None:
    """Check the gateway end to end and say what to fix: config, database, disk, clock,
    LoRa bridge, HTTP ingest, MQTT broker, dispatch (reachability, credentials, TLS), outbox,
    dead letters, silent or low-battery buttons, and storms of bad tags or replays.

    With the daemon running it asks the daemon's local status API; with it stopped it reads
    the config and DB and talks to the bridge itself (never taking a port another program
    holds). Every non-PASS line has a fix hint.

    Exit codes: 0 all PASS, 1 warnings, 2 failures, 3 bad arguments or unwritable bundle.
    """
    th = diag.Thresholds()
    for s in setting or []:
        try:
            th.set(s)
        except ValueError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(EXIT_USAGE) from None
    known = {name for name, _ in diag.CHECKS}
    bad = [o for o in only or [] if o not in known]
    if bad:
        typer.echo(f"error: --only {bad[0]!r}: use one of {', '.join(sorted(known))}", err=True)
        raise typer.Exit(EXIT_USAGE)
    try:
        report = diag.diagnose(config, th, only or None, bundle)
    except diag.BundleError as e:
        typer.echo(f"error: cannot write bundle {bundle}: {e}", err=True)
        raise typer.Exit(EXIT_USAGE) from None
    results, code = report.results, report.exit_code
    if as_json:
        typer.echo(json.dumps({"exit_code": code, "daemon_running": report.daemon_running,
                               "bundle": str(bundle) if bundle else None,
                               "results": [r.as_dict() for r in results]}))
        raise typer.Exit(code)
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    console = Console()
    mode = "daemon running: live state from its status API" if report.daemon_running else \
        "daemon not running: read config and DB directly"
    table = Table(title=f"panicgw diag ({mode})", show_lines=False, expand=False)
    table.add_column("", no_wrap=True)
    table.add_column("check", no_wrap=True)
    table.add_column("finding / fix")
    for r in results:
        cell = Text(r.finding)
        if r.hint and r.status in (diag.WARN, diag.FAIL):
            cell.append("\n→ " + r.hint, style="italic")
        table.add_row(Text(r.status, style=STYLE[r.status]), r.title, cell)
    console.print(table)
    counts = {s: sum(1 for r in results if r.status == s) for s in STYLE}
    summary = ", ".join(f"{n} {s}" for s, n in counts.items() if n)
    console.print(f"{summary}; exit code {code}")
    if bundle is not None:
        console.print(f"support bundle written to {bundle} (secrets removed)")
    raise typer.Exit(code)
