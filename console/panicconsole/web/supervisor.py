"""The supervisor's API: escalated lines, who is on shift (open screens and lines owned),
and the audit trail as CSV (the export itself is audited)."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from panicconsole.alarms import audit, views
from panicconsole.web.context import Context


class SupervisorApi:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx

    def routes(self) -> list[web.RouteDef]:
        return [web.get("/api/supervisor", self.overview),
                web.get("/api/audit.csv", self.audit_csv)]

    async def overview(self, request: web.Request) -> web.Response:
        if (refused := await self.ctx.need(request, "supervisor")) is not None:
            return refused
        alarms = views.open_alarms(self.ctx.reader)
        online: dict[str, dict[str, Any]] = {}
        for who in self.ctx.broadcaster.subscribers.values():
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

    async def audit_csv(self, request: web.Request) -> web.StreamResponse:
        if (refused := await self.ctx.need(request, "supervisor")) is not None:
            return refused
        try:
            since = float(request.query.get("since", 0))
            until = float(request.query.get("until", 1e12))
        except ValueError:
            return web.json_response({"error": "bad_range"}, status=400)
        rows = self.ctx.reader.execute(
            "SELECT * FROM audit WHERE at >= ? AND at < ? ORDER BY seq", (since, until)).fetchall()
        user = self.ctx.user(request)
        now, remote = self.ctx.clock(), request.remote or ""
        await self.ctx.write(lambda c: audit.record(c, now, user, "audit_export", None,
                                                    f"{len(rows)} rows", remote))
        return web.Response(text=audit.to_csv(rows), content_type="text/csv", charset="utf-8",
                            headers={"Content-Disposition":
                                     'attachment; filename="panicconsole-audit.csv"'})
