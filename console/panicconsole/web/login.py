"""Signing in and out. The login form carries a double-submit CSRF token (a cookie scoped to
``/login`` and the same value in the form); failures are rate limited per name and per
address, and every attempt is audited."""

from __future__ import annotations

import asyncio
import secrets
import sqlite3

from aiohttp import web

from panicconsole import auth, i18n
from panicconsole.alarms import audit
from panicconsole.web.context import SESSION_COOKIE, Context, log
from panicconsole.web.pages import html, render

LOGIN_COOKIE = "pc_login"


class Login:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.limiter = auth.LoginLimiter(ctx.cfg.security["login_max_failures"],
                                         ctx.cfg.security["login_window_s"])

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/login", self.page), web.post("/login", self.post),
                web.post("/logout", self.logout)]

    def _lang(self, request: web.Request) -> str:
        lang = request.query.get("lang", "")
        return lang if lang in i18n.LANGS else self.ctx.cfg.console["language"]

    def _page(self, request: web.Request, error: str = "", status: int = 200,
              lang: str | None = None) -> web.Response:
        lang = lang or self._lang(request)
        # Keep the form token of this browser (several tabs, a reload) when it has one.
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not (20 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
            token = secrets.token_urlsafe(24)
        resp = html(render(
            "login.html", lang, title=self.ctx.cfg.console["name"], csrf=token, lang=lang,
            error=i18n.t(lang, error) if error else "",
            other_lang="en" if lang == "id" else "id"), status)
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.ctx.cfg.tls, path="/login", max_age=3600)
        return resp

    async def page(self, request: web.Request) -> web.StreamResponse:
        if request.get("session"):
            raise web.HTTPFound("/")
        return self._page(request)

    async def post(self, request: web.Request) -> web.StreamResponse:
        now = self.ctx.clock()
        form = await request.post()
        lang = str(form.get("lang", "")) if form.get("lang") in i18n.LANGS else None
        username = str(form.get("username", "")).strip()[:64]
        password = str(form.get("password", ""))
        remote = request.remote or ""
        anyone = {"username": username or "-", "role": "-"}
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not auth.csrf_ok(cookie, str(form.get("csrf", ""))):
            log.warning("refused: login without the form's CSRF token from %s", remote,
                        extra={"fields": {"refusal": "csrf", "remote": remote}})
            await self.ctx.write(lambda c: audit.record(c, now, anyone, "refused", None,
                                                        "POST /login: csrf", remote))
            return self._page(request, "login_expired", 403, lang)
        keys = [f"user:{username.lower()}", f"ip:{remote}"]
        wait = self.limiter.retry_after(keys, now)
        if wait > 0:
            log.warning("refused: login for %r from %s rate limited (%.0f s)", username, remote,
                        wait, extra={"fields": {"refusal": "rate_limited", "remote": remote}})
            await self.ctx.write(lambda c: audit.record(c, now, anyone, "login_locked", None,
                                                        f"retry after {wait:.0f} s", remote))
            resp = self._page(request, "login_locked", 429, lang)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        row = self.ctx.reader.execute("SELECT * FROM users WHERE username = ?",
                                      (username,)).fetchone()
        user = await asyncio.to_thread(auth.verify_row, dict(row) if row else None, password)
        if user is None:
            self.limiter.failed(keys, now)
            log.warning("refused: failed login for %r from %s", username, remote,
                        extra={"fields": {"refusal": "bad_login", "remote": remote}})
            await self.ctx.write(lambda c: audit.record(c, now, anyone, "login_failed", None,
                                                        "", remote))
            return self._page(request, "login_failed", 401, lang)
        self.limiter.succeeded(keys)
        rehash = user.get("rehash")

        def job(c: sqlite3.Connection) -> tuple[str, str]:
            if rehash:
                c.execute("UPDATE users SET pw_hash = ? WHERE id = ?", (rehash, user["id"]))
            audit.record(c, now, user, "login", None, "", remote)
            return auth.new_session(c, user["id"], remote)
        token, _ = await self.ctx.write(job)
        log.info("login %s (%s) from %s", user["username"], user["role"], remote)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.ctx.cfg.tls, path="/")
        resp.del_cookie(LOGIN_COOKIE, path="/login")
        raise resp

    async def logout(self, request: web.Request) -> web.StreamResponse:
        s = request["session"]
        now, remote = self.ctx.clock(), request.remote or ""
        user = self.ctx.user(request)

        def job(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (s["token_hash"],))
            audit.record(c, now, user, "logout", None, "", remote)
        await self.ctx.write(job)
        resp = web.json_response({"ok": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp
