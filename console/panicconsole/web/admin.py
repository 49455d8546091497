"""The admin's API: accounts (add, change role, disable, reset a password; an admin cannot
lock themself out), the dispatch receipts and the action plans. Every change is audited."""

from __future__ import annotations

import json
import sqlite3

from aiohttp import web

from panicconsole import auth
from panicconsole import plans as plans_mod
from panicconsole.alarms import audit
from panicconsole.web.context import Context, as_int, read_json


class AdminApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/admin/users", self.users),
                web.post("/api/admin/users", self.user_add),
                web.post("/api/admin/users/{name}", self.user_edit),
                web.get("/api/admin/receipts", self.receipts),
                web.get("/api/admin/plans", self.plans)]

    async def users(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "admin")) is not None:
            return refused
        rows = self.ctx.reader.execute("SELECT id, username, display_name, role, lang, "
                                       "disabled, created_at FROM users ORDER BY username"
                                       ).fetchall()
        return web.json_response([dict(r) for r in rows])

    async def user_add(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "admin")) is not None:
            return refused
        d = await read_json(request)
        if not isinstance(d, dict):
            return web.json_response({"error": "bad_request"}, status=400)
        admin, now, remote = self.ctx.user(request), self.ctx.clock(), request.remote or ""
        min_len = self.ctx.cfg.security["min_password_len"]
        default_lang = self.ctx.cfg.console["language"]

        def job(c: sqlite3.Connection) -> int:
            uid = auth.add_user(c, str(d.get("username", "")), str(d.get("password", "")),
                                str(d.get("role", "")), display_name=str(d.get("name", "")),
                                lang=str(d.get("lang", default_lang)), min_len=min_len)
            audit.record(c, now, admin, "user_add", None,
                         f"{d.get('username')} ({d.get('role')})", remote)
            return uid
        try:
            uid = await self.ctx.write(job)
        except auth.AccountError as e:
            return web.json_response({"error": "bad_account", "message": str(e)}, status=400)
        return web.json_response({"id": uid})

    async def user_edit(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "admin")) is not None:
            return refused
        name = request.match_info["name"]
        d = await read_json(request)
        if not isinstance(d, dict):
            return web.json_response({"error": "bad_request"}, status=400)
        admin, now, remote = self.ctx.user(request), self.ctx.clock(), request.remote or ""
        min_len = self.ctx.cfg.security["min_password_len"]

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
            await self.ctx.write(job)
        except auth.AccountError as e:
            return web.json_response({"error": "bad_account", "message": str(e)}, status=400)
        return web.json_response({"ok": True})

    async def receipts(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "admin")) is not None:
            return refused
        limit = min(as_int(request.query.get("limit", 200)) or 200, 2000)
        rows = self.ctx.reader.execute(
            "SELECT id, at, status, verdict, idempotency_key, gateway, attempt, remote, errors "
            "FROM receipts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        out = [dict(r) | {"errors": json.loads(r["errors"])} for r in rows]
        return web.json_response(out)

    async def plans(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "admin")) is not None:
            return refused
        return web.json_response(plans_mod.listing(self.ctx.reader))
