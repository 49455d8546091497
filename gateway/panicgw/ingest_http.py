"""HTTP(S) ingest for Wi-Fi buttons (aiohttp): ``POST /v1/frames`` and ``GET /v1/health``.

Wire contract (CONTRIBUTING.md, contract 6): the body is the raw 19-byte uplink with
``Content-Type: application/octet-stream``; 200 answers with the 18-byte downlink (ACK STORED
or RESYNC). Anything else means "no acknowledgement": 400 malformed (reason in the body),
403 bad tag / unknown device, 413 too large, 415 wrong content type, 429 rate limited,
503 the gateway could not store it (the button retries).

The server faces shops' networks and the internet, so: body size limit checked before reading,
a token bucket per client address, a cap on open connections, and a sweeper that closes
connections idle or stuck mid-request (slowloris) for longer than ``client_timeout_s``.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from panicgw import __version__
from panicgw import pipeline as pl
from panicproto import frames

log = logging.getLogger("panicgw.http")

MALFORMED = {"short", "long", "bad_version", "bad_type", "bad_field"}
FORBIDDEN = {"bad_tag", "unknown_device"}

Submit = Callable[[pl.Frame], Awaitable[pl.Outcome]]


class TokenBuckets:
    """Per-client token buckets, at most ``max_clients`` remembered (least recent dropped)."""

    def __init__(self, rate: float, burst: int, max_clients: int = 10000,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.rate = rate
        self.burst = float(burst)
        self.max_clients = max_clients
        self.clock = clock
        self._b: OrderedDict[str, tuple[float, float]] = OrderedDict()

    def allow(self, client: str) -> tuple[bool, float]:
        """(allowed, seconds until the next token)."""
        now = self.clock()
        tokens, last = self._b.pop(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - last) * self.rate)
        ok = tokens >= 1.0
        if ok:
            tokens -= 1.0
        self._b[client] = (tokens, now)
        while len(self._b) > self.max_clients:
            self._b.popitem(last=False)
        return ok, 0.0 if ok else (1.0 - tokens) / self.rate


class HttpIngest:
    def __init__(self, submit: Submit, rejections: pl.Rejections, *, host: str = "127.0.0.1",
                 port: int = 8080, max_body: int = 64, rate_per_s: float = 5.0,
                 rate_burst: int = 20, client_timeout_s: float = 10.0, max_clients: int = 2000,
                 ssl_context: ssl.SSLContext | None = None, gateway_id: str = "",
                 health: Callable[[], dict[str, Any]] | None = None) -> None:
        self.submit = submit
        self.rejections = rejections
        self.host = host
        self.port = port
        self.max_body = max_body
        self.buckets = TokenBuckets(rate_per_s, rate_burst)
        self.client_timeout_s = client_timeout_s
        self.max_clients = max_clients
        self.ssl_context = ssl_context
        self.gateway_id = gateway_id
        self.health_extra = health
        self.requests = 0
        self.accepting = True
        self._conns: dict[Any, list[Any]] = {}  # handler -> [since, busy, transport, requests]
        self._runner: web.AppRunner | None = None
        self._sweeper: asyncio.Task[None] | None = None

    # -- application ------------------------------------------------------------------------

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body, middlewares=[self._track])
        app.router.add_post("/v1/frames", self.post_frame)
        app.router.add_get("/v1/health", self.get_health)
        return app

    def _client(self, request: web.Request) -> str:
        return request.remote or "unknown"

    @web.middleware
    async def _track(self, request: web.Request, handler: Any) -> web.StreamResponse:
        info = self._conns.get(request.protocol)
        if info is not None:
            info[1] = True
            info[3] += 1
        try:
            return await handler(request)
        finally:
            if info is not None:
                info[0] = time.monotonic()
                info[1] = False

    def _reject(self, reason: str, request: web.Request, status: int, text: str,
                headers: dict[str, str] | None = None) -> web.Response:
        self.rejections.count(reason, text, path="wifi", source=self._client(request))
        return web.Response(status=status, text=text + "\n", headers=headers)

    async def post_frame(self, request: web.Request) -> web.Response:
        self.requests += 1
        client = self._client(request)
        ok, wait = self.buckets.allow(client)
        if not ok:
            return self._reject("http_rate_limited", request, 429, "rate limited",
                                {"Retry-After": str(max(1, round(wait)))})
        if request.content_length is not None and request.content_length > self.max_body:
            return self._reject("http_too_large", request, 413,
                                f"body over {self.max_body} bytes")
        ctype = request.headers.get("Content-Type", "")
        if ctype.split(";")[0].strip().lower() != "application/octet-stream":
            return self._reject("http_content_type", request, 415,
                                "Content-Type must be application/octet-stream")
        try:
            async with asyncio.timeout(self.client_timeout_s):  # no extra task per request
                body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            return self._reject("http_too_large", request, 413,
                                f"body over {self.max_body} bytes")
        except TimeoutError:
            return self._reject("http_slow_client", request, 408, "body not received in time")
        if not self.accepting:
            return web.Response(status=503, text="gateway shutting down\n",
                                headers={"Retry-After": "5"})
        out = await self.submit(pl.Frame(body, "wifi", source=client))
        if out.downlink is not None:
            return web.Response(body=out.downlink, content_type="application/octet-stream")
        reason = out.reason or "rejected"
        if reason in MALFORMED:
            return web.Response(status=400, text=f"malformed: {reason}\n")
        if reason in FORBIDDEN:
            return web.Response(status=403, text=f"{reason}\n")
        return web.Response(status=503, text="not stored, retry\n", headers={"Retry-After": "2"})

    async def get_health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": "ok" if self.accepting else "draining",
            "gateway_id": self.gateway_id,
            "version": __version__,
            "protocol": frames.VERSION_1,
            "time": time.time(),
        }
        if self.health_extra is not None:
            body.update(self.health_extra())
        return web.json_response(body)

    # -- connection bookkeeping (slow clients, connection cap) ------------------------------------

    def _install_tracking(self, server: Any) -> None:
        made, lost = server.connection_made, server.connection_lost

        def connection_made(handler: Any, transport: Any) -> None:
            made(handler, transport)
            if len(self._conns) >= self.max_clients:
                self.rejections.count("http_too_many_clients", "connection cap reached",
                                      path="wifi")
                transport.close()
                return
            self._conns[handler] = [time.monotonic(), False, transport, 0]

        def connection_lost(handler: Any, exc: BaseException | None = None) -> None:
            self._conns.pop(handler, None)
            lost(handler, exc)

        server.connection_made = connection_made
        server.connection_lost = connection_lost

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.client_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for handler, (since, busy, transport, nreq) in list(self._conns.items()):
                if not busy and now - since > self.client_timeout_s:
                    self._conns.pop(handler, None)
                    # Idle keep-alive after a request is normal; a connection that never
                    # completed a request line and headers in time is a slow client.
                    if nreq == 0:
                        self.rejections.count("http_slow_client", "no request in time",
                                              path="wifi")
                    transport.close()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True,
            keepalive_timeout=2 * self.client_timeout_s + 1, max_line_size=1024,
            max_field_size=2048,
        )
        await self._runner.setup()
        assert self._runner.server is not None
        self._install_tracking(self._runner.server)
        site = web.TCPSite(self._runner, self.host, self.port, ssl_context=self.ssl_context,
                           backlog=256)
        await site.start()
        if self.port == 0:
            sock = site._server.sockets[0]  # type: ignore[union-attr]
            self.port = sock.getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("HTTP ingest listening", extra={"fields": {
            "host": self.host, "port": self.port, "tls": self.ssl_context is not None}})

    async def stop(self) -> None:
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._runner is not None:
            await self._runner.cleanup()

    @property
    def connections(self) -> int:
        return len(self._conns)


def server_ssl_context(cert: str, key: str) -> ssl.SSLContext:
    """TLS 1.2+ server context from PEM files."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(cert, key)
    return ctx
