"""What every route area shares: the config and clock, the database (one read-only
connection; writes go through the single writer), the live feed, the signed-in session, and
how a request is refused (answered, logged, and audited when someone is signed in)."""

from __future__ import annotations

import logging
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from panicconsole import auth
from panicconsole import config as config_mod
from panicconsole.alarms import audit
from panicconsole.db import Writer
from panicconsole.web.broadcast import Broadcaster

log = logging.getLogger("panicconsole")

SESSION_COOKIE = "pc_session"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY_S = 60.0

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Context:
    def __init__(self, cfg: config_mod.Config, clock: Callable[[], float]) -> None:
        self.cfg = cfg
        self.clock = clock
        self.broadcaster = Broadcaster()
        self.writer: Writer | None = None  # both set by Console.start()
        self.read: sqlite3.Connection | None = None

    @property
    def reader(self) -> sqlite3.Connection:
        assert self.read is not None
        return self.read

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self.writer is not None
        return await self.writer.run(fn)

    def session(self, request: web.Request) -> dict[str, Any] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or self.read is None:
            return None
        return auth.lookup(self.read, token, self.cfg.security["session_idle_min"] * 60.0,
                           self.clock())

    async def touch(self, sess: dict[str, Any], now: float) -> None:
        """Keep a session in use alive; at most one write a minute per session."""
        if now - sess["last_seen"] > TOUCH_EVERY_S:
            th = sess["token_hash"]
            await self.write(lambda c: c.execute(
                "UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, th)))

    async def refuse(self, request: web.Request, status: int, code: str,
                     detail: str = "") -> web.Response:
        """Answer a refusal, log it, and audit it when someone is signed in."""
        sess = request.get("session")
        who = sess["username"] if sess else "-"
        log.warning("refused: %s %s for %s: %s %s", request.method, request.path, who, code,
                    detail, extra={"fields": {"remote": request.remote, "refusal": code,
                                              "user": who}})
        if sess:
            user = {"username": sess["username"], "role": sess["role"]}
            text = f"{request.method} {request.path}: {code}" + (f" ({detail})" if detail else "")
            remote = request.remote or ""
            await self.write(lambda c: audit.record(c, self.clock(), user, "refused", None,
                                                    text, remote))
        return web.json_response({"error": code}, status=status)

    def user(self, request: web.Request) -> dict[str, Any]:
        s = request["session"]
        return {"id": s["id"], "username": s["username"], "role": s["role"]}

    async def need(self, request: web.Request, role: str) -> web.Response | None:
        """None when the signed-in user has ``role`` (or above), else the refusal."""
        s = request.get("session")
        if s is None or not auth.allowed(s["role"], role):
            return await self.refuse(request, 403, "forbidden", f"needs role {role}")
        return None


def as_int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1


async def read_json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
