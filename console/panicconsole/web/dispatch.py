"""The gateways' door: ``POST /v1/events`` checked against the dispatch contract and
answered 2xx only once the document and its effect on the queue are committed (a 503 makes
the gateway keep it and retry); every answer is a receipt. ``/healthz`` counts them."""

from __future__ import annotations

import contextlib
import sqlite3

from aiohttp import web

from panicconsole import __version__, contract
from panicconsole.alarms import intake
from panicconsole.web.context import Context, log

REFUSED_RECEIPTS_PER_MIN = 600


class DispatchEndpoint:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.token = ctx.cfg.dispatch["token"]
        self.secret = ctx.cfg.dispatch["secret"].encode()
        self.stats = {"accepted": 0, "duplicate": 0, "refused": 0, "not_stored": 0}
        self._refused_window = (0.0, 0)

    def routes(self) -> list[web.RouteDef]:
        return [web.post(contract.EVENTS_PATH, self.post), web.get("/healthz", self.health)]

    async def health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "version": __version__, **self.stats})

    async def post(self, request: web.Request) -> web.Response:
        now = self.ctx.clock()
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
                           tolerance_s=self.ctx.cfg.dispatch["tolerance_s"])
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
            applied = await self.ctx.write(job)
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
            await self.ctx.write(lambda c: intake.record_receipt(
                c, now, status, verdict, key, gw, attempt, remote, errors, body))
