"""A real, local dispatch receiver: what a dispatch integrator must build, runnable.

It checks everything docs/dispatch-api.md promises (bearer token, HMAC signature with a
timestamp tolerance, JSON Schema, Idempotency-Key deduplication), records every request with
its verdict, and can fail on demand (status codes, slow answers, being stopped so connections
are refused). Tests, ``panicdemo`` and ``panicgw dispatch-server`` use it.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import ssl
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from panicgw.forward.contract import (
    EVENTS_PATH,
    MAX_BODY,
    SIGNATURE_HEADER,
    schema_errors,
    verify_signature,
)


@dataclass
class Received:
    """One request as dispatch saw it."""

    at: float
    status: int  # what we answered
    verdict: str  # "accepted" | "duplicate" | "failed_on_demand" | a rejection reason
    idempotency_key: str | None
    headers: dict[str, str]
    body: Any  # parsed JSON or None
    errors: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        h = {k: v for k, v in self.headers.items() if k.lower() != "authorization"}
        return {"at": self.at, "status": self.status, "verdict": self.verdict,
                "idempotency_key": self.idempotency_key, "headers": h, "body": self.body,
                "errors": self.errors}


@dataclass
class Failure:
    """An on-demand failure: answer ``status`` (or hang ``delay_s``) for ``count`` requests."""

    status: int | None = 500
    delay_s: float = 0.0
    count: int | None = None  # None = until cleared
    retry_after: float | None = None


class DispatchServer:
    """``await srv.start()`` -> listening on ``srv.url``; ``await srv.stop()``.

    ``token``/``secret`` empty means that check is not required (a warning in the CLI).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        token: str = "",
        secret: str | bytes = b"",
        ssl_context: ssl.SSLContext | None = None,
        tolerance_s: float = 300.0,
        on_request: Callable[[Received], None] | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.host = host
        self.port = port
        self._token = token
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._ssl = ssl_context
        self.tolerance_s = tolerance_s
        self.on_request = on_request
        self._clock = clock
        self.received: list[Received] = []
        self.incidents: dict[str, dict[str, Any]] = {}  # idempotency key -> first body
        self.failure: Failure | None = None
        self.active = 0  # requests being handled right now
        self._runner: web.AppRunner | None = None
        self._changed = asyncio.Condition()

    # -- control ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        scheme = "https" if self._ssl else "http"
        return f"{scheme}://{self.host}:{self.port}{EVENTS_PATH}"

    @property
    def running(self) -> bool:
        return self._runner is not None

    def fail(self, status: int | None = 500, *, count: int | None = None, delay_s: float = 0.0,
             retry_after: float | None = None) -> None:
        """Fail the next ``count`` requests (None: until :meth:`heal`) with ``status``;
        ``delay_s`` first (longer than the client's timeout simulates a hung dispatch)."""
        self.failure = Failure(status, delay_s, count, retry_after)

    def heal(self) -> None:
        self.failure = None

    def accepted(self) -> list[Received]:
        """Requests that created an incident (first copy of each Idempotency-Key)."""
        return [r for r in self.received if r.verdict == "accepted"]

    async def wait_for(self, predicate: Callable[[DispatchServer], bool],
                       timeout: float = 10.0) -> bool:
        """Wait until ``predicate(self)`` holds after some request (False on timeout)."""
        async def _wait() -> None:
            async with self._changed:
                await self._changed.wait_for(lambda: predicate(self))
        try:
            await asyncio.wait_for(_wait(), timeout)
            return True
        except TimeoutError:
            return predicate(self)

    async def start(self) -> None:
        """Listen (again, on the same port after :meth:`stop`)."""
        app = web.Application(client_max_size=MAX_BODY)
        app.router.add_post(EVENTS_PATH, self._handle)
        app.router.add_get("/v1/received", self._list)
        app.router.add_get("/healthz", self._health)
        self._runner = web.AppRunner(app, access_log=None, handler_cancellation=True,
                                     shutdown_timeout=0.5)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self._ssl,
                           reuse_address=True)
        await site.start()
        if self.port == 0:
            self.port = int(self._runner.addresses[0][1])

    async def stop(self) -> None:
        """Stop listening: clients now get connection refused."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    # -- handlers --------------------------------------------------------------------------

    async def _health(self, request: web.Request) -> web.Response:
        return web.json_response({"ok": True, "received": len(self.received),
                                  "incidents": len(self.incidents)})

    async def _list(self, request: web.Request) -> web.Response:
        return web.json_response([r.to_dict() for r in self.received])

    async def _record(self, rec: Received) -> None:
        self.received.append(rec)
        if self.on_request is not None:
            self.on_request(rec)
        async with self._changed:
            self._changed.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        self.active += 1
        async with self._changed:
            self._changed.notify_all()
        try:
            return await self._handle_one(request)
        finally:
            self.active -= 1

    async def _handle_one(self, request: web.Request) -> web.StreamResponse:
        headers = dict(request.headers)
        key = request.headers.get("Idempotency-Key")
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            await self._record(Received(self._clock(), 413, "too_large", key, headers, None))
            return web.json_response({"error": "body too large"}, status=413)

        f = self.failure
        if f is not None:
            if f.count is not None:
                f.count -= 1
                if f.count <= 0:
                    self.failure = None
            if f.delay_s:
                await asyncio.sleep(f.delay_s)
            if f.status is not None:
                body = _parse(raw)
                await self._record(Received(self._clock(), f.status, "failed_on_demand", key,
                                            headers, body))
                extra = {"Retry-After": str(int(f.retry_after))} if f.retry_after else None
                return web.json_response({"error": "failing on demand"}, status=f.status,
                                         headers=extra)

        status, verdict, body, errors = self._check(request, raw, key)
        await self._record(Received(self._clock(), status, verdict, key, headers, body, errors))
        if status != 200:
            return web.json_response({"error": verdict, "details": errors}, status=status)
        return web.json_response({"status": verdict, "incident_id": body.get("incident_id")})

    def _check(self, request: web.Request, raw: bytes,
               key: str | None) -> tuple[int, str, Any, list[str]]:
        if self._token:
            auth = request.headers.get("Authorization", "")
            want = f"Bearer {self._token}".encode()
            if not hmac.compare_digest(auth.encode(), want):
                return 401, "bad_token", None, ["Authorization: Bearer <token> missing or wrong"]
        if self._secret:
            sig = request.headers.get(SIGNATURE_HEADER)
            if not sig:
                return 401, "no_signature", None, [f"{SIGNATURE_HEADER} header missing"]
            why = verify_signature(self._secret, sig, raw, self._clock(), self.tolerance_s)
            if why:
                return 401, "bad_signature", None, [why]
        if request.content_type != "application/json":
            return 415, "bad_content_type", None, ["Content-Type must be application/json"]
        body = _parse(raw)
        if body is None:
            return 400, "bad_json", None, ["body is not JSON"]
        errors = schema_errors(body)
        if errors:
            return 422, "schema", body, errors
        if not key:
            return 400, "no_idempotency_key", body, ["Idempotency-Key header missing"]
        if key != body["idempotency_key"]:
            return 400, "key_mismatch", body, ["Idempotency-Key differs from the body's"]
        if key in self.incidents:
            return 200, "duplicate", body, []
        self.incidents[key] = body
        return 200, "accepted", body, []


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None
