"""What a screen shows and how it stays current: ``/api/state`` is one consistent snapshot
with its feed number; ``/api/stream`` sends every change after a number (the backlog from
the database, then live ones) and a heartbeat with the server's clock."""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any

from aiohttp import web

from panicconsole import auth
from panicconsole.alarms import views
from panicconsole.web.context import SESSION_COOKIE, Context


def sse(seq: int, kind: str, data: str) -> bytes:
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()


def tick(now: float, seq: int) -> bytes:
    return f"event: tick\ndata: {json.dumps({'now': now, 'seq': seq})}\n\n".encode()


class Live:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/state", self.api_state), web.get("/api/stream", self.api_stream)]

    def state(self) -> dict[str, Any]:
        c = self.ctx.reader
        c.execute("BEGIN")  # one snapshot: the rows and the feed number agree
        try:
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            state = {"seq": seq, "now": self.ctx.clock(), "alarms": views.open_alarms(c),
                     "gateways": views.gateways(c), "log": views.recent_log(c, 100)}
        finally:
            c.execute("COMMIT")
        return state

    async def api_state(self, request: web.Request) -> web.Response:
        return web.json_response(self.state())

    async def api_stream(self, request: web.Request) -> web.StreamResponse:
        s = request["session"]
        try:
            since = int(request.query.get("since") or request.headers.get("Last-Event-ID") or 0)
        except ValueError:
            since = 0
        resp = web.StreamResponse(headers={"Content-Type": "text/event-stream",
                                           "Cache-Control": "no-cache",
                                           "X-Accel-Buffering": "no"})
        await resp.prepare(request)
        broadcaster = self.ctx.broadcaster
        q = broadcaster.subscribe({"username": s["username"], "role": s["role"],
                                   "id": s["id"], "since": self.ctx.clock()})
        hb = self.ctx.cfg.live["heartbeat_s"]
        token = request.cookies.get(SESSION_COOKIE, "")
        try:
            read = self.ctx.reader
            lo = read.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            last = since
            if since and lo is not None and since < lo - 1:
                await resp.write(b"event: resync\ndata: {}\n\n")
            else:
                backlog = read.execute(
                    "SELECT seq, at, kind, data FROM changes WHERE seq > ? ORDER BY seq",
                    (since,)).fetchall()
                for r in backlog:
                    await resp.write(sse(r["seq"], r["kind"], r["data"]))
                    last = r["seq"]
            await resp.write(tick(self.ctx.clock(), last))
            next_tick = time.monotonic() + hb
            while True:
                timeout = max(0.0, next_tick - time.monotonic())
                try:
                    rows = await asyncio.wait_for(q.get(), timeout)
                except TimeoutError:
                    rows = []
                if rows is None:  # cut (slow reader) or shutting down
                    break
                for r in rows:
                    if r["seq"] > last:
                        await resp.write(sse(r["seq"], r["kind"], r["data"]))
                        last = r["seq"]
                if time.monotonic() >= next_tick:
                    if not await self._session_alive(token):
                        await resp.write(b"event: logout\ndata: {}\n\n")
                        break
                    await resp.write(tick(self.ctx.clock(), last))
                    next_tick = time.monotonic() + hb
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            broadcaster.unsubscribe(q)
        return resp

    async def _session_alive(self, token: str) -> bool:
        """An open screen keeps its session alive (a quiet night is not idleness); a session
        ended elsewhere (logout, password change, account disabled) ends the stream."""
        now = self.ctx.clock()
        sess = auth.lookup(self.ctx.reader, token,
                           self.ctx.cfg.security["session_idle_min"] * 60.0, now)
        if sess is None:
            return False
        await self.ctx.touch(sess, now)
        return True
