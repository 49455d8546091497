"""`panicgw run`: the gateway daemon (systemd runs it; see deploy/panicgw.service)."""

from __future__ import annotations

import asyncio
from pathlib import Path

import typer

from panicgw import config as config_mod

EXIT_CONFIG = 2
EXIT_STORE = 3


def run(
    config: Path = typer.Option(
        None, "--config", "-c",
        help="Gateway TOML file (see deploy/gateway.toml.example). Without it: embedded "
        "defaults (SQLite in ./panicgw-data, HTTP ingest on :8080, serial auto-detect, "
        "no broker, no dispatch).",
    ),
    check: bool = typer.Option(
        False, "--check", help="Validate the config, print it (secrets hidden) and exit."
    ),
) -> None:
    """Run the gateway: receive frames over the LoRa bridge and HTTP, verify, store, ACK,
    forward. Stops cleanly on SIGTERM (in-flight frames are stored and acknowledged first).

    Exit codes: 0 stopped cleanly, 2 bad config (the message names the key), 3 the database
    cannot be opened.
    """
    import json

    from panicgw.daemon import run as run_daemon
    from panicgw.store import StoreError
    from panicgw.systemd import setup_logging

    try:
        cfg = config_mod.load(config)
    except config_mod.ConfigError as e:
        typer.echo(f"error: bad config: {e}", err=True)
        raise typer.Exit(EXIT_CONFIG) from None
    if check:
        typer.echo(json.dumps(cfg.redacted(), indent=2))
        return
    setup_logging(cfg.gateway["log_level"], cfg.gateway["log_format"])
    try:
        code = asyncio.run(run_daemon(cfg))
    except StoreError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(EXIT_STORE) from None
    except OSError as e:
        typer.echo(f"error: cannot start: {e}", err=True)
        raise typer.Exit(EXIT_STORE) from None
    raise typer.Exit(code)
