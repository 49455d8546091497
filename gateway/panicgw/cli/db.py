"""How `panicgw devices`/`events`/`outbox`/`monitor` find and open the gateway DB (contract C3).

Every one of them opens the DB the daemon opens, only through :mod:`panicgw.access`: the
path given with ``--gateway-db`` (alias ``--db``), else ``<[gateway] data_dir>/gateway.db``
of ``--config`` (default ``/etc/panicgw/gateway.toml`` or ``$PANICGW_CONFIG``). None of them
ever creates a DB: a mistyped path or a file that is not a gateway DB is an error naming the
fix, and leaves nothing behind. Only ``panicgw run`` (and ``panicgw setup``) create it.
"""

from __future__ import annotations

from pathlib import Path

import typer

from panicgw import access
from panicgw import config as gwconfig
from panicgw.store import Store

CONFIG_HELP = ("Gateway TOML, the one `panicgw run --config` uses (its \\[gateway] data_dir "
               "holds the DB). Default: $PANICGW_CONFIG or /etc/panicgw/gateway.toml.")
DB_HELP = "The gateway DB itself (<data_dir>/gateway.db); overrides --config."


def config_path(config: Path | None) -> Path:
    """``--config`` or the default the daemon's unit uses."""
    return config if config is not None else access.default_config()


def load_config(config: Path | None, exit_code: int) -> gwconfig.Config:
    """The gateway config (``--config`` or the default), or a clear error and ``exit_code``."""
    path = config_path(config)
    if not path.is_file():
        typer.echo(f"error: no gateway config at {path}: pass --config with the file "
                   "`panicgw run --config` uses (or --gateway-db with its database)", err=True)
        raise typer.Exit(exit_code)
    try:
        return gwconfig.load(path)
    except gwconfig.ConfigError as e:
        typer.echo(f"error: bad config: {e}", err=True)
        raise typer.Exit(exit_code) from None


def open_store(config: Path | None, db: Path | None, *, readonly: bool,
               config_exit: int, db_exit: int) -> tuple[Store, gwconfig.Config | None]:
    """(opened Store, config or None when ``db`` was given). Never creates a DB."""
    cfg = None
    if db is None:
        cfg = load_config(config, config_exit)
        db = cfg.db_path
    try:
        return access.open_db(db, readonly=readonly), cfg
    except access.AccessError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(db_exit) from None
