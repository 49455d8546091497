"""The operator's API: who am I (and the settings the screen needs), my language, one
line's detail (site card, device, history, audit trail), and the actions on a line."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from aiohttp import web

from panicconsole import __version__, i18n
from panicconsole.alarms import audit, handling, history, ownership, views
from panicconsole.alarms.rules import DISPOSITIONS, ActionError
from panicconsole.web.context import Context, as_int, read_json


class OperatorApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/me", self.me), web.post("/api/me/lang", self.lang),
                web.get("/api/alarms/{id:\\d+}", self.alarm),
                web.post("/api/alarms/{id:\\d+}/{action}", self.action)]

    async def me(self, request: web.Request) -> web.Response:
        s = request["session"]
        c = self.ctx.cfg
        return web.json_response({
            "user": {"id": s["id"], "username": s["username"],
                     "name": s["display_name"] or s["username"], "role": s["role"],
                     "lang": s["lang"]},
            "csrf": s["csrf"], "console": c.console["name"], "version": __version__,
            "queue": c.queue, "escalation": c.escalation, "heartbeat_s": c.live["heartbeat_s"],
            "map": c.map, "dispositions": list(DISPOSITIONS),
            "checkin_overdue_s": c.gateways["checkin_overdue_s"],
        })

    async def lang(self, request: web.Request) -> web.Response:
        data = await read_json(request)
        lang = data.get("lang") if isinstance(data, dict) else None
        if lang not in i18n.LANGS:
            return web.json_response({"error": "bad_lang"}, status=400)
        uid = request["session"]["id"]
        await self.ctx.write(lambda c: c.execute("UPDATE users SET lang = ? WHERE id = ?",
                                                 (lang, uid)))
        return web.json_response({"lang": lang})

    async def alarm(self, request: web.Request) -> web.Response:
        aid = int(request.match_info["id"])
        c = self.ctx.reader
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
            "history": history.site_history(c, a["site_key"], self.ctx.clock()),
            "device": device, "site": dict(site) if site else None,
            "gateway": views.gateway_view(c, a["gateway_id"]),
        })

    async def action(self, request: web.Request) -> web.Response:
        aid = int(request.match_info["id"])
        action = request.match_info["action"]
        data = await read_json(request)
        if not isinstance(data, dict):
            data = {}
        user = self.ctx.user(request)
        now, remote = self.ctx.clock(), request.remote or ""
        fns: dict[str, Callable[[sqlite3.Connection], dict[str, Any]]] = {
            "take": lambda c: ownership.take(c, aid, user, now, remote),
            "take_over": lambda c: ownership.take_over(c, aid, user, now,
                                                       str(data.get("reason", "")), remote),
            "step": lambda c: handling.tick(c, aid, user, as_int(data.get("index")),
                                            bool(data.get("done", True)), now, remote),
            "note": lambda c: handling.note(c, aid, user, str(data.get("text", "")), now,
                                            remote),
            "close": lambda c: handling.close(c, aid, user, str(data.get("disposition", "")),
                                              str(data.get("note", "")), now, remote),
        }
        fn = fns.get(action)
        if fn is None:
            return web.json_response({"error": "no_such_action"}, status=404)
        try:
            alarm = await self.ctx.write(fn)
        except ActionError as e:
            await self.ctx.refuse(request, e.status, e.code,
                                  f"alarm {aid}" + (f" owner {e.detail.get('owner')}"
                                                    if e.detail.get("owner") else ""))
            return web.json_response({"error": e.code, **e.detail}, status=e.status)
        return web.json_response({"alarm": alarm})
