"""What the CLI commands share: loading the config, opening the DB, failing clearly."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any, NoReturn

import typer

from panicconsole import config as config_mod
from panicconsole.db import StoreError, connect

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_CANNOT_LISTEN = 3

DEFAULT_CONFIG = Path("/etc/panicconsole/console.toml")

CONFIG_OPTION = typer.Option(
    None, "--config", "-c",
    help="The console's TOML file (default: /etc/panicconsole/console.toml when it exists, "
         "else the embedded defaults: data in ./panicconsole-data).",
    dir_okay=False)


def fail(msg: str, code: int = EXIT_USAGE) -> NoReturn:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def load_config(path: Path | None) -> config_mod.Config:
    if path is None and DEFAULT_CONFIG.exists():
        path = DEFAULT_CONFIG
    try:
        return config_mod.load(path)
    except config_mod.ConfigError as e:
        fail(f"bad config: {e}")


def open_db(cfg: config_mod.Config, *, create: bool = False) -> sqlite3.Connection:
    try:
        return connect(cfg.db_path, create=create)
    except StoreError as e:
        fail(f"{e}")


def emit_json(obj: Any) -> None:
    typer.echo(json.dumps(obj, indent=2, ensure_ascii=False, default=str))


def transaction(conn: sqlite3.Connection) -> Any:
    """``with transaction(conn):`` BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error)."""
    return _Tx(conn)


class _Tx:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn

    def __enter__(self) -> sqlite3.Connection:
        self.conn.execute("BEGIN IMMEDIATE")
        return self.conn

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        self.conn.execute("ROLLBACK" if exc_type else "COMMIT")
