"""The console process: opens the database (one writer thread, one read connection), builds
the aiohttp app from the route areas, listens (TLS when configured), and runs the clock-
driven work: escalation, silent gateways, pruning."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import ssl
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from panicconsole import config as config_mod
from panicconsole import contract
from panicconsole.alarms import escalation, gateway_watch, retention
from panicconsole.db import Writer, connect
from panicconsole.web.admin import AdminApi
from panicconsole.web.context import Context, log
from panicconsole.web.dispatch import DispatchEndpoint
from panicconsole.web.guard import Guard
from panicconsole.web.live import Live
from panicconsole.web.login import Login
from panicconsole.web.operator import OperatorApi
from panicconsole.web.pages import STATIC, Pages
from panicconsole.web.supervisor import SupervisorApi


class Console:
    """``await console.start()`` then ``console.port``; ``await console.stop()``."""

    def __init__(self, cfg: config_mod.Config, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.ctx = Context(cfg, clock)
        self.port = cfg.server["port"]
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cfg.server["tls_cert"], self.cfg.server["tls_key"])
        return ctx

    def make_app(self) -> web.Application:
        ctx = self.ctx
        app = web.Application(client_max_size=contract.MAX_BODY,
                              middlewares=Guard(ctx).middlewares())
        for area in (DispatchEndpoint(ctx), Pages(ctx), Login(ctx), Live(ctx), OperatorApi(ctx),
                     SupervisorApi(ctx), AdminApi(ctx)):
            app.add_routes(area.routes())
        app.router.add_static("/static", STATIC, show_index=False)
        return app

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.ctx.writer = Writer(self.cfg.db_path, on_commit=self._committed)
        self.ctx.read = connect(self.cfg.db_path)
        self.ctx.read.execute("PRAGMA query_only = ON")
        app = self.make_app()
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.cfg.server["host"], self.port,
                           ssl_context=self.ssl_context(), reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(site._server.sockets[0].getsockname()[1])  # type: ignore[union-attr]
        self._tasks = [asyncio.create_task(self._timers(), name="timers")]
        log.info("console listening on %s", self.cfg.url(port=self.port),
                 extra={"fields": {"port": self.port, "tls": self.cfg.tls}})

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await t
        self.ctx.broadcaster.end_all()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.ctx.writer is not None:
            await asyncio.to_thread(self.ctx.writer.close)
            self.ctx.writer = None
        if self.ctx.read is not None:
            self.ctx.read.close()
            self.ctx.read = None

    def _committed(self, rows: list[sqlite3.Row]) -> None:
        """Writer thread, after a commit: hand the new changes to the event loop."""
        items = [{"seq": r["seq"], "at": r["at"], "kind": r["kind"], "data": r["data"]}
                 for r in rows]
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.ctx.broadcaster.publish, items)

    async def _timers(self) -> None:
        """Escalation every second, silent gateways every 2 s, pruning every hour."""
        esc, write = self.cfg.escalation, self.ctx.write
        n = 0
        while True:
            await asyncio.sleep(1.0)
            n += 1
            now = self.ctx.clock()
            try:
                await write(lambda c, now=now: escalation.escalate_due(
                    c, now, esc["take_within_s"], esc["close_within_min"] * 60.0))
                if n % 2 == 0:
                    await write(lambda c, now=now: gateway_watch.check_gateways(
                        c, now, self.cfg.gateways["checkin_overdue_s"]))
                if n % 3600 == 5:
                    pruned = await write(lambda c, now=now: retention.prune(
                        c, now, self.cfg.dispatch["keep_days"],
                        self.cfg.security["session_idle_min"] * 60.0))
                    log.info("pruned old rows: %s", pruned)
            except sqlite3.Error as e:
                log.error("timer work failed: %s", e)
