"""`panicgw setup`: parsing and printing; the install steps are :mod:`panicgw.setup`."""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import typer

from panicgw.setup import Setup, SetupError

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2


def setup(
    root: Path = typer.Option(
        None, "--root", metavar="DIR",
        help="Install into DIR as a self-contained tree (tests, trying it out): paths in the "
        "config and unit point inside DIR, the user goes into DIR/etc/passwd, the unit is "
        "enabled with `systemctl --root`."),
    dry_run: bool = typer.Option(False, "--dry-run",
                                 help="List what would be done; change nothing."),
    start: bool = typer.Option(False, "--start",
                               help="Also (re)start the service (after editing the config)."),
    user: str = typer.Option("panicgw", "--user", help="The service user."),
    gateway_id: str = typer.Option(
        None, "--gateway-id", help="\\[gateway] id for a new config (default gw-<hostname>)."),
    as_json: bool = typer.Option(False, "--json", help="Print one JSON object for scripts."),
) -> None:
    """Install the gateway as a systemd service on this Pi: the system user `panicgw`, its
    directories, /etc/panicgw/gateway.toml from the example (an existing one is kept), the
    empty gateway DB, the panicgw.service unit, enabled at boot, and /usr/local/bin/panicgw,
    a link to this panicgw so that `panicgw` works on the PATH (also with sudo). Safe to run
    again: it changes only what differs. Run it with sudo from the panicgw you installed
    (`sudo /opt/panicgw/.venv/bin/panicgw setup`).

    Then: edit /etc/panicgw/gateway.toml (\\[gateway] id, \\[dispatch] url, token, secret),
    `sudo systemctl restart panicgw`, and check with
    `sudo -u panicgw panicgw diag --config /etc/panicgw/gateway.toml`.

    Exit codes: 0 installed (or already so), 1 a step failed (the message says what to do),
    2 not run as root without --root/--dry-run.
    """
    if root is None and not dry_run and os.geteuid() != 0:
        typer.echo("error: setup installs system files: run it with sudo (or --dry-run to "
                   "see what it would do)", err=True)
        raise typer.Exit(EXIT_USAGE)
    s = Setup(root, user=user, gateway_id=gateway_id, dry_run=dry_run, start=start)
    error = None
    try:
        s.run()
    except (SetupError, OSError) as e:
        error = str(e)
    next_steps = s.next_steps()
    if as_json:
        typer.echo(json.dumps({"root": str(s.root) if s.root else None, "dry_run": dry_run,
                               "steps": [asdict(x) for x in s.steps], "error": error,
                               "next": next_steps}))
    else:
        width = max((len(x.action) for x in s.steps), default=6)
        for x in s.steps:
            typer.echo(f"{x.action:<{width}}  {x.what}" + (f": {x.detail}" if x.detail else ""))
        if error is None:
            typer.echo("next:" if not dry_run else "after that:")
            for n, line in enumerate(next_steps, 1):
                typer.echo(f"  {n}. {line}")
    if error is not None:
        typer.echo(f"error: {error}", err=True)
        raise typer.Exit(EXIT_FAILED)
