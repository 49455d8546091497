"""`panicconsole serve`: run the console (dispatch endpoint + operators' web app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
from pathlib import Path

import typer

from panicconsole import config as config_mod
from panicconsole import logs
from panicconsole.common import (
    CONFIG_OPTION,
    EXIT_CANNOT_LISTEN,
    EXIT_USAGE,
    fail,
    load_config,
    open_db,
)
from panicconsole.db import StoreError

log = logging.getLogger("panicconsole")


def serve(config: Path = CONFIG_OPTION) -> None:
    """Run the console: gateways POST alarms to /v1/events, operators use the web pages.

    One process, SQLite in [console] data_dir (WAL, synchronous=FULL: a gateway gets 2xx only
    once its alarm is on disk). Needs [dispatch] token and secret (the values every gateway
    has in its own [dispatch] section) and at least one admin: `panicconsole user add NAME
    --role admin`. HTTPS when [server] tls_cert/tls_key are set (`panicconsole cert
    selfsigned` makes a pair for a first install). Stops cleanly on SIGTERM/Ctrl-C.

    Exit codes: 0 stopped cleanly, 2 bad configuration, 3 cannot listen on the port.
    """
    cfg = load_config(config)
    problems = config_mod.problems(cfg)
    if problems:
        for p in problems:
            typer.echo(f"error: {p}", err=True)
        raise typer.Exit(EXIT_USAGE)
    logs.setup(cfg.console["log_level"], cfg.console["log_format"])
    conn = open_db(cfg, create=True)
    try:
        admins = conn.execute("SELECT COUNT(*) FROM users WHERE role = 'admin' AND "
                              "disabled = 0").fetchone()[0]
    finally:
        conn.close()
    if not admins:
        log.warning("no admin account yet: create one with 'panicconsole user add NAME "
                    "--role admin' (nobody can sign in until then)")
    try:
        asyncio.run(_run(cfg))
    except OSError as e:
        fail(f"cannot listen on {cfg.server['host']}:{cfg.server['port']}: {e.strerror or e} "
             "(another program on that port? see 'ss -ltnp')", EXIT_CANNOT_LISTEN)
    except StoreError as e:
        fail(str(e))


async def _run(cfg: config_mod.Config) -> None:
    from panicconsole.web.app import Console

    console = Console(cfg)
    await console.start()
    runtime = cfg.data_dir / "runtime.json"
    runtime.write_text(json.dumps({"pid": os.getpid(), "port": console.port,
                                   "url": cfg.url(port=console.port)}))
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        log.info("stopping")
        await console.stop()
        with contextlib.suppress(OSError):
            runtime.unlink()
