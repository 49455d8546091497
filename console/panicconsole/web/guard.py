"""The middlewares every request passes: security headers on every answer, and for
everything but the gateways' door and static files a session (else the login page or 401),
the page's own Origin and the session's CSRF token on every state change."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from panicconsole import auth, contract
from panicconsole import config as config_mod
from panicconsole.web.context import CSRF_HEADER, Context, Handler, log

OPEN_PATHS = (contract.EVENTS_PATH, "/healthz", "/favicon.ico")


class Guard:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def middlewares(self) -> list[Any]:
        return [self.headers, self.sessions]

    def csp(self) -> str:
        tiles = config_mod.tile_origin(self.ctx.cfg)
        return ("default-src 'self'; script-src 'self'; style-src 'self'; "
                f"img-src 'self' data:{' ' + tiles if tiles else ''}; connect-src 'self'; "
                "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
                "form-action 'self'; object-src 'none'")

    @web.middleware
    async def headers(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            resp = await handler(request)
        except web.HTTPException as e:
            resp = e
        h = resp.headers
        h.setdefault("X-Content-Type-Options", "nosniff")
        h.setdefault("Referrer-Policy", "no-referrer")
        h.setdefault("X-Frame-Options", "DENY")
        if not request.path.startswith("/static/"):
            h.setdefault("Cache-Control", "no-store")
        if resp.content_type == "text/html":
            h.setdefault("Content-Security-Policy", self.csp())
        if self.ctx.cfg.tls:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if isinstance(resp, web.HTTPException):
            raise resp
        return resp

    @web.middleware
    async def sessions(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in OPEN_PATHS or path.startswith("/static/"):
            return await handler(request)
        sess = self.ctx.session(request)
        request["session"] = sess
        if path == "/login":
            return await handler(request)
        if sess is None:
            if path not in ("/", "/admin") or request.method != "GET":
                log.warning("refused: %s %s without a session", request.method, path,
                            extra={"fields": {"remote": request.remote, "refusal": "no_session"}})
                return web.json_response({"error": "login_required"}, status=401)
            raise web.HTTPFound("/login")
        if request.method not in ("GET", "HEAD", "OPTIONS"):
            origin = request.headers.get("Origin")
            if origin is not None and origin != f"{request.scheme}://{request.host}":
                return await self.ctx.refuse(request, 403, "bad_origin", f"Origin {origin}")
            if not auth.csrf_ok(sess["csrf"], request.headers.get(CSRF_HEADER)):
                return await self.ctx.refuse(request, 403, "csrf",
                                             "missing or wrong CSRF token")
        await self.ctx.touch(sess, self.ctx.clock())
        return await handler(request)
