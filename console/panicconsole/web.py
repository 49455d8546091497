"""The console's one process: the dispatch endpoint for gateways and the operators' web app.

- ``POST /v1/events``: the dispatch contract (contract.py), answered 2xx only after the
  document and its effect on the queue are committed to SQLite.
- Pages (``/``, ``/login``, ``/admin``) and a JSON API under ``/api`` for signed-in users;
  every state change needs the session's CSRF token; roles gate what each user may do;
  every refusal is logged (and audited when someone is signed in).
- ``GET /api/stream``: server-sent events. Every change has a number (``changes.seq``); a
  browser that reconnects asks for the changes after the last number it saw, so it neither
  misses nor repeats one. A heartbeat carries the server's clock: a screen that stops hearing
  it says so at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import html
import json
import logging
import secrets
import sqlite3
import ssl
import time
from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import Path
from typing import Any

from aiohttp import web

from panicconsole import __version__, auth, contract, i18n
from panicconsole import config as config_mod
from panicconsole import plans as plans_mod
from panicconsole.alarms import (
    audit,
    escalation,
    gateway_watch,
    handling,
    history,
    intake,
    ownership,
    retention,
    views,
)
from panicconsole.alarms.rules import DISPOSITIONS, ActionError
from panicconsole.db import Writer, connect

log = logging.getLogger("panicconsole")

SESSION_COOKIE = "pc_session"
LOGIN_COOKIE = "pc_login"
CSRF_HEADER = "X-CSRF-Token"
TOUCH_EVERY_S = 60.0
SUBSCRIBER_QUEUE = 2000
REFUSED_RECEIPTS_PER_MIN = 600

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

STATIC = Path(str(resources.files("panicconsole").joinpath("static")))


def _page(name: str) -> str:
    return (STATIC / name).read_text(encoding="utf-8")


class Broadcaster:
    """Fans committed changes out to every open stream (one queue per stream)."""

    def __init__(self) -> None:
        self.subscribers: dict[asyncio.Queue[list[dict[str, Any]] | None], dict[str, Any]] = {}

    def subscribe(self, who: dict[str, Any]) -> asyncio.Queue[list[dict[str, Any]] | None]:
        q: asyncio.Queue[list[dict[str, Any]] | None] = asyncio.Queue(SUBSCRIBER_QUEUE)
        self.subscribers[q] = who
        return q

    def unsubscribe(self, q: asyncio.Queue[list[dict[str, Any]] | None]) -> None:
        self.subscribers.pop(q, None)

    def publish(self, rows: list[dict[str, Any]]) -> None:
        for q in list(self.subscribers):
            try:
                q.put_nowait(rows)
            except asyncio.QueueFull:  # a stuck reader: cut it, it reconnects and replays
                self.subscribers.pop(q, None)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)


class Console:
    """``await console.start()`` then ``console.port``; ``await console.stop()``."""

    def __init__(self, cfg: config_mod.Config, *, clock: Callable[[], float] = time.time) -> None:
        self.cfg = cfg
        self.clock = clock
        self.port = cfg.server["port"]
        self.broadcaster = Broadcaster()
        self.limiter = auth.LoginLimiter(cfg.security["login_max_failures"],
                                         cfg.security["login_window_s"])
        self.writer: Writer | None = None
        self.read: sqlite3.Connection | None = None
        self._runner: web.AppRunner | None = None
        self._tasks: list[asyncio.Task[Any]] = []
        self._loop: asyncio.AbstractEventLoop | None = None
        self._refused_window = (0.0, 0)
        self.token = cfg.dispatch["token"]
        self.secret = cfg.dispatch["secret"].encode()
        self.stats = {"accepted": 0, "duplicate": 0, "refused": 0, "not_stored": 0}

    # -- lifecycle ----------------------------------------------------------------------------

    def ssl_context(self) -> ssl.SSLContext | None:
        if not self.cfg.tls:
            return None
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.load_cert_chain(self.cfg.server["tls_cert"], self.cfg.server["tls_key"])
        return ctx

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self.cfg.data_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self.writer = Writer(self.cfg.db_path, on_commit=self._committed)
        self.read = connect(self.cfg.db_path)
        self.read.execute("PRAGMA query_only = ON")
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
        for q in list(self.broadcaster.subscribers):  # end streams so shutdown is quick
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)
            self.writer = None
        if self.read is not None:
            self.read.close()
            self.read = None

    def _committed(self, rows: list[sqlite3.Row]) -> None:
        """Writer thread, after a commit: hand the new changes to the event loop."""
        items = [{"seq": r["seq"], "at": r["at"], "kind": r["kind"], "data": r["data"]}
                 for r in rows]
        if self._loop is not None:
            with contextlib.suppress(RuntimeError):
                self._loop.call_soon_threadsafe(self.broadcaster.publish, items)

    async def write(self, fn: Callable[[sqlite3.Connection], Any]) -> Any:
        assert self.writer is not None
        return await self.writer.run(fn)

    async def _timers(self) -> None:
        """Escalation every second, silent gateways every 2 s, pruning every hour."""
        esc = self.cfg.escalation
        tick = 0
        while True:
            await asyncio.sleep(1.0)
            tick += 1
            now = self.clock()
            try:
                await self.write(lambda c, now=now: escalation.escalate_due(
                    c, now, esc["take_within_s"], esc["close_within_min"] * 60.0))
                if tick % 2 == 0:
                    await self.write(lambda c, now=now: gateway_watch.check_gateways(
                        c, now, self.cfg.gateways["checkin_overdue_s"]))
                if tick % 3600 == 5:
                    n = await self.write(lambda c, now=now: retention.prune(
                        c, now, self.cfg.dispatch["keep_days"],
                        self.cfg.security["session_idle_min"] * 60.0))
                    log.info("pruned old rows: %s", n)
            except sqlite3.Error as e:
                log.error("timer work failed: %s", e)

    # -- the app ----------------------------------------------------------------------------

    def make_app(self) -> web.Application:
        app = web.Application(client_max_size=contract.MAX_BODY,
                              middlewares=[self._headers_mw, self._auth_mw])
        r = app.router
        r.add_post(contract.EVENTS_PATH, self.dispatch_post)
        r.add_get("/healthz", self.health)
        r.add_get("/favicon.ico", self.favicon)
        r.add_get("/", self.page_app)
        r.add_get("/login", self.page_login)
        r.add_post("/login", self.login_post)
        r.add_post("/logout", self.logout_post)
        r.add_get("/admin", self.page_admin)
        r.add_get("/api/me", self.api_me)
        r.add_post("/api/me/lang", self.api_lang)
        r.add_get("/api/state", self.api_state)
        r.add_get("/api/stream", self.api_stream)
        r.add_get("/api/alarms/{id:\\d+}", self.api_alarm)
        r.add_post("/api/alarms/{id:\\d+}/{action}", self.api_action)
        r.add_get("/api/supervisor", self.api_supervisor)
        r.add_get("/api/audit.csv", self.api_audit_csv)
        r.add_get("/api/admin/users", self.api_users)
        r.add_post("/api/admin/users", self.api_user_add)
        r.add_post("/api/admin/users/{name}", self.api_user_edit)
        r.add_get("/api/admin/receipts", self.api_receipts)
        r.add_get("/api/admin/plans", self.api_plans)
        r.add_static("/static", STATIC, show_index=False)
        return app

    # -- middlewares ------------------------------------------------------------------------

    def _csp(self) -> str:
        tiles = config_mod.tile_origin(self.cfg)
        return ("default-src 'self'; script-src 'self'; style-src 'self'; "
                f"img-src 'self' data:{' ' + tiles if tiles else ''}; connect-src 'self'; "
                "media-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'; "
                "form-action 'self'; object-src 'none'")

    @web.middleware
    async def _headers_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
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
            h.setdefault("Content-Security-Policy", self._csp())
        if self.cfg.tls:
            h.setdefault("Strict-Transport-Security", "max-age=31536000")
        if isinstance(resp, web.HTTPException):
            raise resp
        return resp

    def _session(self, request: web.Request) -> dict[str, Any] | None:
        token = request.cookies.get(SESSION_COOKIE, "")
        if not token or self.read is None:
            return None
        return auth.lookup(self.read, token, self.cfg.security["session_idle_min"] * 60.0,
                           self.clock())

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        path = request.path
        if path in (contract.EVENTS_PATH, "/healthz", "/favicon.ico") or path.startswith(
                "/static/"):
            return await handler(request)
        sess = self._session(request)
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
                return await self.refuse(request, 403, "bad_origin", f"Origin {origin}")
            if not auth.csrf_ok(sess["csrf"], request.headers.get(CSRF_HEADER)):
                return await self.refuse(request, 403, "csrf", "missing or wrong CSRF token")
        if self.clock() - sess["last_seen"] > TOUCH_EVERY_S:
            th, now = sess["token_hash"], self.clock()
            await self.write(lambda c: c.execute(
                "UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, th)))
        return await handler(request)

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
            await self.write(lambda c: audit.record(c, self.clock(), user, "refused", None, text,
                                                   remote))
        return web.json_response({"error": code}, status=status)

    def _user(self, request: web.Request) -> dict[str, Any]:
        s = request["session"]
        return {"id": s["id"], "username": s["username"], "role": s["role"]}

    async def _need(self, request: web.Request, role: str) -> web.Response | None:
        s = request.get("session")
        if s is None or not auth.allowed(s["role"], role):
            return await self.refuse(request, 403, "forbidden", f"needs role {role}")
        return None

    # -- dispatch endpoint ------------------------------------------------------------------

    async def favicon(self, request: web.Request) -> web.Response:
        return web.Response(status=204)

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__, **self.stats})

    async def dispatch_post(self, request: web.Request) -> web.Response:
        now = self.clock()
        key = request.headers.get("Idempotency-Key")
        gw = request.headers.get("X-Panic-Gateway")
        attempt = request.headers.get("X-Panic-Attempt")
        remote = request.remote or ""
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            await self._refused_receipt(now, 413, "too_large", key, gw, attempt, remote,
                                        ["body too large"], None)
            return web.json_response({"error": "body too large"}, status=413)
        v = contract.check(request.headers, request.content_type, raw, token=self.token,
                           secret=self.secret, now=now,
                           tolerance_s=self.cfg.dispatch["tolerance_s"])
        if v.status != 200:
            authed = v.verdict not in ("bad_token",)
            body_text = raw.decode("utf-8", "replace")[:contract.MAX_BODY] if authed else None
            await self._refused_receipt(now, v.status, v.verdict, key, gw, attempt, remote,
                                        v.errors, body_text)
            log.warning("dispatch refused: %d %s from %s (gateway %s): %s", v.status, v.verdict,
                        remote, gw, "; ".join(v.errors[:3]),
                        extra={"fields": {"refusal": v.verdict, "remote": remote}})
            return web.json_response({"error": v.verdict, "details": v.errors}, status=v.status)
        body, text = v.body, raw.decode("utf-8")
        assert key is not None

        def job(c: sqlite3.Connection) -> intake.Applied:
            applied = intake.apply_event(c, body, key, now, text)
            intake.record_receipt(c, now, 200, applied.verdict, key, gw, attempt, remote, [],
                                 text)
            return applied
        try:
            applied = await self.write(job)
        except sqlite3.Error as e:
            self.stats["not_stored"] += 1
            log.error("dispatch document NOT stored (answering 503, the gateway retries): %s", e)
            return web.json_response({"error": "not_stored", "details": [str(e)]}, status=503)
        self.stats[applied.verdict] += 1
        if applied.verdict == "accepted":
            log.info("accepted %s %s from %s", body["event"], body["incident_id"],
                     body["gateway_id"])
        return web.json_response({"status": applied.verdict, "incident_id": body["incident_id"]})

    async def _refused_receipt(self, now: float, status: int, verdict: str, key: str | None,
                               gw: str | None, attempt: str | None, remote: str,
                               errors: list[str], body: str | None) -> None:
        self.stats["refused"] += 1
        start, n = self._refused_window
        if now - start > 60:
            start, n = now, 0
        if n >= REFUSED_RECEIPTS_PER_MIN:  # a flood of junk must not fill the disk
            self._refused_window = (start, n)
            return
        self._refused_window = (start, n + 1)
        with contextlib.suppress(sqlite3.Error):
            await self.write(lambda c: intake.record_receipt(
                c, now, status, verdict, key, gw, attempt, remote, errors, body))

    # -- pages ----------------------------------------------------------------------------------

    def _render(self, name: str, page_lang: str, **fields: str) -> str:
        text = _page(name)
        for k, v in fields.items():
            text = text.replace("{{" + k + "}}", html.escape(v, quote=True))
        # {{t:key}} -> the message in the page's language
        out, pos = [], 0
        while True:
            i = text.find("{{t:", pos)
            if i < 0:
                out.append(text[pos:])
                break
            j = text.find("}}", i)
            out.append(text[pos:i])
            out.append(html.escape(i18n.t(page_lang, text[i + 4:j]), quote=True))
            pos = j + 2
        return "".join(out)

    def _html(self, text: str, status: int = 200) -> web.Response:
        return web.Response(text=text, content_type="text/html", charset="utf-8", status=status)

    async def page_app(self, request: web.Request) -> web.Response:
        s = request["session"]
        return self._html(self._render("app.html", s["lang"], title=self.cfg.console["name"],
                                       lang=s["lang"]))

    async def page_admin(self, request: web.Request) -> web.Response:
        s = request["session"]
        if not auth.allowed(s["role"], "admin"):
            await self.refuse(request, 403, "forbidden", "admin page")
            return self._html(self._render("forbidden.html", s["lang"], lang=s["lang"],
                                           title=self.cfg.console["name"]), 403)
        return self._html(self._render("admin.html", s["lang"], title=self.cfg.console["name"],
                                       lang=s["lang"]))

    def _login_lang(self, request: web.Request) -> str:
        lang = request.query.get("lang", "")
        return lang if lang in i18n.LANGS else self.cfg.console["language"]

    def _login_page(self, request: web.Request, error: str = "", status: int = 200,
                    lang: str | None = None) -> web.Response:
        lang = lang or self._login_lang(request)
        # Keep the form token of this browser (several tabs, a reload) when it has one.
        token = request.cookies.get(LOGIN_COOKIE, "")
        if not (20 <= len(token) <= 64 and token.replace("-", "").replace("_", "").isalnum()):
            token = secrets.token_urlsafe(24)
        resp = self._html(self._render(
            "login.html", lang, title=self.cfg.console["name"], csrf=token, lang=lang,
            error=i18n.t(lang, error) if error else "",
            other_lang="en" if lang == "id" else "id"), status)
        resp.set_cookie(LOGIN_COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.cfg.tls, path="/login", max_age=3600)
        return resp

    async def page_login(self, request: web.Request) -> web.StreamResponse:
        if request.get("session"):
            raise web.HTTPFound("/")
        return self._login_page(request)

    async def login_post(self, request: web.Request) -> web.StreamResponse:
        now = self.clock()
        form = await request.post()
        lang = str(form.get("lang", "")) if form.get("lang") in i18n.LANGS else None
        username = str(form.get("username", "")).strip()[:64]
        password = str(form.get("password", ""))
        remote = request.remote or ""
        cookie = request.cookies.get(LOGIN_COOKIE, "")
        if not cookie or not auth.csrf_ok(cookie, str(form.get("csrf", ""))):
            log.warning("refused: login without the form's CSRF token from %s", remote,
                        extra={"fields": {"refusal": "csrf", "remote": remote}})
            await self.write(lambda c: audit.record(c, now, {"username": username or "-",
                                                            "role": "-"}, "refused", None,
                                                   "POST /login: csrf", remote))
            return self._login_page(request, "login_expired", 403, lang)
        keys = [f"user:{username.lower()}", f"ip:{remote}"]
        wait = self.limiter.retry_after(keys, now)
        if wait > 0:
            log.warning("refused: login for %r from %s rate limited (%.0f s)", username, remote,
                        wait, extra={"fields": {"refusal": "rate_limited", "remote": remote}})
            await self.write(lambda c: audit.record(c, now, {"username": username or "-",
                                                            "role": "-"}, "login_locked", None,
                                                   f"retry after {wait:.0f} s", remote))
            resp = self._login_page(request, "login_locked", 429, lang)
            resp.headers["Retry-After"] = str(int(wait) + 1)
            return resp
        assert self.read is not None
        row = self.read.execute("SELECT * FROM users WHERE username = ?",
                                (username,)).fetchone()
        user = await asyncio.to_thread(auth.verify_row, dict(row) if row else None, password)
        if user is None:
            self.limiter.failed(keys, now)
            log.warning("refused: failed login for %r from %s", username, remote,
                        extra={"fields": {"refusal": "bad_login", "remote": remote}})
            await self.write(lambda c: audit.record(c, now, {"username": username or "-",
                                                            "role": "-"}, "login_failed", None,
                                                   "", remote))
            return self._login_page(request, "login_failed", 401, lang)
        self.limiter.succeeded(keys)
        rehash = user.get("rehash")

        def job(c: sqlite3.Connection) -> tuple[str, str]:
            if rehash:
                c.execute("UPDATE users SET pw_hash = ? WHERE id = ?", (rehash, user["id"]))
            audit.record(c, now, user, "login", None, "", remote)
            return auth.new_session(c, user["id"], remote)
        token, _ = await self.write(job)
        log.info("login %s (%s) from %s", user["username"], user["role"], remote)
        resp = web.HTTPSeeOther("/")
        resp.set_cookie(SESSION_COOKIE, token, httponly=True, samesite="Strict",
                        secure=self.cfg.tls, path="/")
        resp.del_cookie(LOGIN_COOKIE, path="/login")
        raise resp

    async def logout_post(self, request: web.Request) -> web.StreamResponse:
        s = request["session"]
        now, remote = self.clock(), request.remote or ""
        user = self._user(request)

        def job(c: sqlite3.Connection) -> None:
            c.execute("DELETE FROM sessions WHERE token_hash = ?", (s["token_hash"],))
            audit.record(c, now, user, "logout", None, "", remote)
        await self.write(job)
        resp = web.json_response({"ok": True})
        resp.del_cookie(SESSION_COOKIE, path="/")
        return resp

    # -- API: the operator's screen ----------------------------------------------------------

    async def api_me(self, request: web.Request) -> web.Response:
        s = request["session"]
        c = self.cfg
        return web.json_response({
            "user": {"id": s["id"], "username": s["username"],
                     "name": s["display_name"] or s["username"], "role": s["role"],
                     "lang": s["lang"]},
            "csrf": s["csrf"], "console": c.console["name"], "version": __version__,
            "queue": c.queue, "escalation": c.escalation, "heartbeat_s": c.live["heartbeat_s"],
            "map": c.map, "dispositions": list(DISPOSITIONS),
            "checkin_overdue_s": c.gateways["checkin_overdue_s"],
        })

    async def api_lang(self, request: web.Request) -> web.Response:
        data = await _json(request)
        lang = data.get("lang") if isinstance(data, dict) else None
        if lang not in i18n.LANGS:
            return web.json_response({"error": "bad_lang"}, status=400)
        uid = request["session"]["id"]
        await self.write(lambda c: c.execute("UPDATE users SET lang = ? WHERE id = ?",
                                             (lang, uid)))
        return web.json_response({"lang": lang})

    def _state(self) -> dict[str, Any]:
        assert self.read is not None
        c = self.read
        c.execute("BEGIN")  # one snapshot: the rows and the feed number agree
        try:
            seq = c.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()[0]
            state = {"seq": seq, "now": self.clock(), "alarms": views.open_alarms(c),
                     "gateways": views.gateways(c), "log": views.recent_log(c, 100)}
        finally:
            c.execute("COMMIT")
        return state

    async def api_state(self, request: web.Request) -> web.Response:
        return web.json_response(self._state())

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
        q = self.broadcaster.subscribe({"username": s["username"], "role": s["role"],
                                        "id": s["id"], "since": self.clock()})
        hb = self.cfg.live["heartbeat_s"]
        token = request.cookies.get(SESSION_COOKIE, "")
        try:
            assert self.read is not None
            lo = self.read.execute("SELECT MIN(seq) FROM changes").fetchone()[0]
            last = since
            if since and lo is not None and since < lo - 1:
                await resp.write(b"event: resync\ndata: {}\n\n")
            else:
                backlog = self.read.execute(
                    "SELECT seq, at, kind, data FROM changes WHERE seq > ? ORDER BY seq",
                    (since,)).fetchall()
                for r in backlog:
                    await resp.write(_sse(r["seq"], r["kind"], r["data"]))
                    last = r["seq"]
            await resp.write(_tick(self.clock(), last))
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
                        await resp.write(_sse(r["seq"], r["kind"], r["data"]))
                        last = r["seq"]
                if time.monotonic() >= next_tick:
                    if not await self._stream_session_alive(token):
                        await resp.write(b"event: logout\ndata: {}\n\n")
                        break
                    await resp.write(_tick(self.clock(), last))
                    next_tick = time.monotonic() + hb
        except (ConnectionResetError, asyncio.CancelledError):
            pass
        finally:
            self.broadcaster.unsubscribe(q)
        return resp

    async def _stream_session_alive(self, token: str) -> bool:
        """An open screen keeps its session alive (a quiet night is not idleness); a session
        ended elsewhere (logout, password change, account disabled) ends the stream."""
        assert self.read is not None
        now = self.clock()
        sess = auth.lookup(self.read, token, self.cfg.security["session_idle_min"] * 60.0, now)
        if sess is None:
            return False
        if now - sess["last_seen"] > TOUCH_EVERY_S:
            th = sess["token_hash"]
            await self.write(lambda c: c.execute(
                "UPDATE sessions SET last_seen = ? WHERE token_hash = ?", (now, th)))
        return True

    async def api_alarm(self, request: web.Request) -> web.Response:
        assert self.read is not None
        aid = int(request.match_info["id"])
        c = self.read
        a = views.alarm_view(c, aid)
        if a is None:
            return web.json_response({"error": "err_no_such_alarm"}, status=404)
        dev = (c.execute("SELECT * FROM devices WHERE device_id = ?", (a["device_id"],))
               .fetchone() if a["device_id"] else None)
        site = (c.execute("SELECT * FROM sites WHERE site_key = ?", (a["site_key"],))
                .fetchone() if a["site_key"] else None)
        device = None
        if dev is not None:
            device = dict(dev)
            device["paths"] = json.loads(device["paths"] or "[]")
            device["last_paths"] = json.loads(device["last_paths"] or "[]")
        return web.json_response({
            "alarm": a, "audit": audit.for_alarm(c, aid),
            "history": history.site_history(c, a["site_key"], self.clock()),
            "device": device, "site": dict(site) if site else None,
            "gateway": views.gateway_view(c, a["gateway_id"]),
        })

    async def api_action(self, request: web.Request) -> web.Response:
        aid = int(request.match_info["id"])
        action = request.match_info["action"]
        data = await _json(request)
        if not isinstance(data, dict):
            data = {}
        user = self._user(request)
        now, remote = self.clock(), request.remote or ""
        fns: dict[str, Callable[[sqlite3.Connection], dict[str, Any]]] = {
            "take": lambda c: ownership.take(c, aid, user, now, remote),
            "take_over": lambda c: ownership.take_over(c, aid, user, now,
                                                   str(data.get("reason", "")), remote),
            "step": lambda c: handling.tick(c, aid, user, _int(data.get("index")),
                                         bool(data.get("done", True)), now, remote),
            "note": lambda c: handling.note(c, aid, user, str(data.get("text", "")), now, remote),
            "close": lambda c: handling.close(c, aid, user, str(data.get("disposition", "")),
                                           str(data.get("note", "")), now, remote),
        }
        fn = fns.get(action)
        if fn is None:
            return web.json_response({"error": "no_such_action"}, status=404)
        try:
            alarm = await self.write(fn)
        except ActionError as e:
            await self.refuse(request, e.status, e.code,
                              f"alarm {aid}" + (f" owner {e.detail.get('owner')}"
                                                if e.detail.get("owner") else ""))
            return web.json_response({"error": e.code, **e.detail}, status=e.status)
        return web.json_response({"alarm": alarm})

    # -- API: supervisor ------------------------------------------------------------------------

    async def api_supervisor(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "supervisor")) is not None:
            return refused
        assert self.read is not None
        alarms = views.open_alarms(self.read)
        online: dict[str, dict[str, Any]] = {}
        for who in self.broadcaster.subscribers.values():
            o = online.setdefault(who["username"], {"username": who["username"],
                                                    "role": who["role"], "screens": 0,
                                                    "owns": 0})
            o["screens"] += 1
        for a in alarms:
            if a["owner"]:
                o = online.setdefault(a["owner"]["username"], {
                    "username": a["owner"]["username"], "role": "", "screens": 0, "owns": 0})
                o["owns"] += 1
        return web.json_response({
            "escalated": [a for a in alarms if a["escalation"]],
            "operators": sorted(online.values(), key=lambda o: o["username"]),
            "open": len(alarms), "unowned": sum(1 for a in alarms if not a["owner"]),
        })

    async def api_audit_csv(self, request: web.Request) -> web.StreamResponse:
        if (refused := await self._need(request, "supervisor")) is not None:
            return refused
        assert self.read is not None
        try:
            since = float(request.query.get("since", 0))
            until = float(request.query.get("until", 1e12))
        except ValueError:
            return web.json_response({"error": "bad_range"}, status=400)
        rows = self.read.execute("SELECT * FROM audit WHERE at >= ? AND at < ? ORDER BY seq",
                                 (since, until)).fetchall()
        user = self._user(request)
        now, remote = self.clock(), request.remote or ""
        await self.write(lambda c: audit.record(c, now, user, "audit_export", None,
                                               f"{len(rows)} rows", remote))
        return web.Response(text=audit.to_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition":
                                     'attachment; filename="panicconsole-audit.csv"'})

    # -- API: admin ------------------------------------------------------------------------------

    async def api_users(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "admin")) is not None:
            return refused
        assert self.read is not None
        rows = self.read.execute("SELECT id, username, display_name, role, lang, disabled, "
                                 "created_at FROM users ORDER BY username").fetchall()
        return web.json_response([dict(r) for r in rows])

    async def api_user_add(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "admin")) is not None:
            return refused
        d = await _json(request)
        if not isinstance(d, dict):
            return web.json_response({"error": "bad_request"}, status=400)
        admin, now, remote = self._user(request), self.clock(), request.remote or ""
        min_len = self.cfg.security["min_password_len"]

        def job(c: sqlite3.Connection) -> int:
            uid = auth.add_user(c, str(d.get("username", "")), str(d.get("password", "")),
                                str(d.get("role", "")), display_name=str(d.get("name", "")),
                                lang=str(d.get("lang", self.cfg.console["language"])),
                                min_len=min_len)
            audit.record(c, now, admin, "user_add", None,
                        f"{d.get('username')} ({d.get('role')})", remote)
            return uid
        try:
            uid = await self.write(job)
        except auth.AccountError as e:
            return web.json_response({"error": "bad_account", "message": str(e)}, status=400)
        return web.json_response({"id": uid})

    async def api_user_edit(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "admin")) is not None:
            return refused
        name = request.match_info["name"]
        d = await _json(request)
        if not isinstance(d, dict):
            return web.json_response({"error": "bad_request"}, status=400)
        admin, now, remote = self._user(request), self.clock(), request.remote or ""
        min_len = self.cfg.security["min_password_len"]

        def job(c: sqlite3.Connection) -> None:
            row = c.execute("SELECT * FROM users WHERE username = ?", (name,)).fetchone()
            if row is None:
                raise auth.AccountError(f"no user {name!r}")
            changes = []
            if "role" in d:
                if d["role"] not in auth.ROLES:
                    raise auth.AccountError("role must be operator, supervisor or admin")
                if row["id"] == admin["id"] and d["role"] != "admin":
                    raise auth.AccountError("you cannot take the admin role from yourself")
                c.execute("UPDATE users SET role = ? WHERE id = ?", (d["role"], row["id"]))
                changes.append(f"role {d['role']}")
            if "disabled" in d:
                if row["id"] == admin["id"] and d["disabled"]:
                    raise auth.AccountError("you cannot disable yourself")
                c.execute("UPDATE users SET disabled = ? WHERE id = ?",
                          (int(bool(d["disabled"])), row["id"]))
                if d["disabled"]:
                    c.execute("DELETE FROM sessions WHERE user_id = ?", (row["id"],))
                changes.append("disabled" if d["disabled"] else "enabled")
            if "password" in d:
                auth.set_password(c, name, str(d["password"]), min_len)
                changes.append("password reset")
            if not changes:
                raise auth.AccountError("nothing to change (role, disabled or password)")
            audit.record(c, now, admin, "user_edit", None, f"{name}: {', '.join(changes)}",
                        remote)
        try:
            await self.write(job)
        except auth.AccountError as e:
            return web.json_response({"error": "bad_account", "message": str(e)}, status=400)
        return web.json_response({"ok": True})

    async def api_receipts(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "admin")) is not None:
            return refused
        assert self.read is not None
        limit = min(_int(request.query.get("limit", 200)) or 200, 2000)
        rows = self.read.execute("SELECT id, at, status, verdict, idempotency_key, gateway, "
                                 "attempt, remote, errors FROM receipts ORDER BY id DESC "
                                 "LIMIT ?", (limit,)).fetchall()
        out = [dict(r) | {"errors": json.loads(r["errors"])} for r in rows]
        return web.json_response(out)

    async def api_plans(self, request: web.Request) -> web.Response:
        if (refused := await self._need(request, "admin")) is not None:
            return refused
        assert self.read is not None
        return web.json_response(plans_mod.listing(self.read))


def _sse(seq: int, kind: str, data: str) -> bytes:
    return f"id: {seq}\nevent: {kind}\ndata: {data}\n\n".encode()


def _tick(now: float, seq: int) -> bytes:
    return f"event: tick\ndata: {json.dumps({'now': now, 'seq': seq})}\n\n".encode()


def _int(v: Any) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return -1


async def _json(request: web.Request) -> Any:
    try:
        return await request.json()
    except (ValueError, UnicodeDecodeError):
        return None
