"""`panicconsole config check`: validate the TOML file before a restart."""

from __future__ import annotations

from pathlib import Path

import typer

from panicconsole import config as config_mod
from panicconsole.common import CONFIG_OPTION, EXIT_FAILED, EXIT_OK, emit_json, fail

app = typer.Typer(help="Check the console's configuration.", no_args_is_help=True)


@app.command("check")
def check(config: Path = CONFIG_OPTION,
          json_out: bool = typer.Option(False, "--json", help="Print the result as JSON.")
          ) -> None:
    """Validate the config file: unknown keys, types and ranges, TLS files, dispatch
    credentials. Prints the settings in force (token and secret hidden).

    Exit codes: 0 ready to serve, 1 valid but something keeps `serve` from working
    (listed), 2 invalid (the message names the key).
    """
    from panicconsole.common import DEFAULT_CONFIG
    path = config if config is not None else (DEFAULT_CONFIG if DEFAULT_CONFIG.exists()
                                              else None)
    try:
        cfg = config_mod.load(path)
    except config_mod.ConfigError as e:
        if json_out:
            emit_json({"ok": False, "error": str(e)})
            raise typer.Exit(2) from None
        fail(f"bad config: {e}")
    problems = config_mod.problems(cfg)
    if json_out:
        emit_json({"ok": not problems, "source": cfg.source, "problems": problems,
                   "settings": cfg.redacted()})
    else:
        typer.echo(f"{cfg.source}: valid")
        for sec, vals in cfg.redacted().items():
            typer.echo(f"[{sec}]")
            for k, v in vals.items():
                typer.echo(f"  {k} = {v!r}")
        for p in problems:
            typer.echo(f"problem: {p}", err=True)
    raise typer.Exit(EXIT_FAILED if problems else EXIT_OK)
