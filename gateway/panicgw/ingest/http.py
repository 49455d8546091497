"""HTTP(S) ingest for Wi-Fi buttons (aiohttp): ``POST /v1/frames`` and ``GET /v1/health``.

Wire contract (CONTRIBUTING.md, contract 6): the body is the raw 19-byte uplink with
``Content-Type: application/octet-stream``; 200 answers with the 18-byte downlink (ACK STORED
or DELIVERED, or RESYNC). Anything else means "no acknowledgement": 400 malformed (reason in
the body), 403 refused (one answer for an unknown device and a bad tag, so the network cannot
enumerate device ids; both reasons are still counted apart inside), 408 body too slow, 413
too large, 415 wrong content type, 429 rate limited, 503 the gateway could not store it (the
button retries).

The server faces shops' networks and the internet, so: body size limit checked before reading,
a token bucket per client address, a cap on open connections, and a sweeper that closes
connections idle or stuck mid-request (slowloris) for longer than ``client_timeout_s``.

Request-level noise never floods the log: every malformed request (bad request line, bad
header, oversize line or header, broken body) is counted per reason (``http_*`` in the status
API's rejections) and logged through the rejection log budget, one line without traceback;
aiohttp's own per-request error records (an error-level traceback each, 13 MB per 200,000 bad
requests before) come to :class:`_RequestLog` instead of the journal.

Only aiohttp's public API is used: the runner's low-level ``web.Server``
(``AppRunner.server``) is the protocol factory of our own ``loop.create_server`` listener,
wrapped in :class:`_Tracked`, which sees each connection come and go and keys its books by
the connection's transport (``request.transport`` in a handler); aiohttp's request errors
reach :class:`_RequestLog` through the runner's ``logger`` argument. Nothing in aiohttp is
patched, and no private attribute is read.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import http_exceptions as hx
from aiohttp import web

from panicgw import __version__
from panicgw import pipeline as pl
from panicgw.ratelimit import Buckets, LogBudget
from panicproto import errors, frames

log = logging.getLogger("panicgw.http")

MALFORMED = {errors.SHORT, errors.LONG, errors.VERSION, errors.TYPE, errors.FIELD}
# One answer to the network for all of these (see the module docstring).
FORBIDDEN = {errors.TAG, pl.UNKNOWN_DEVICE, pl.COUNTER_EXHAUSTED}
FORBIDDEN_BODY = "forbidden\n"

# aiohttp's parser errors -> our rejection reasons (most specific class first).
REQUEST_ERRORS: tuple[tuple[type[BaseException], str], ...] = (
    (hx.BadHttpMethod, "http_bad_method"),
    (hx.BadStatusLine, "http_bad_request_line"),
    (hx.InvalidURLError, "http_bad_request_line"),
    (hx.LineTooLong, "http_too_long"),
    (hx.InvalidHeader, "http_bad_header"),
    (hx.PayloadEncodingError, "http_bad_body"),
    (web.RequestPayloadError, "http_bad_body"),
    (hx.HttpProcessingError, "http_bad_request"),
)


# llhttp reports many errors as a plain BadHttpMessage; its text says which part was bad.
GENERIC_BY_TEXT = (("too many headers", "http_too_long"), ("chunk", "http_bad_body"),
                   ("transfer-encoding", "http_bad_body"), ("header", "http_bad_header"),
                   ("content-length", "http_bad_header"))


def request_error_reason(exc: BaseException | None) -> str | None:
    """Rejection reason for an error aiohttp raised while parsing a client's request; None
    when it is not the client's fault (a bug of ours)."""
    if exc is None:
        return None
    for cls, reason in REQUEST_ERRORS:
        if isinstance(exc, cls):
            if reason == "http_bad_request":
                text = str(exc).lower()
                for needle, specific in GENERIC_BY_TEXT:
                    if needle in text:
                        return specific
            return reason
    return None


def _first_line(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return " ".join(str(text).split())[:160]


class _RequestLog(logging.Logger):
    """The logger aiohttp's request handler writes to (``RequestHandler(logger=...)``).

    aiohttp logs every request it cannot parse as an error with a traceback; here each such
    record becomes one counted rejection instead (and so one rate-bounded log line). Any
    other record with an exception is a fault of ours (a handler bug): counted as
    ``http_internal_error`` and logged with its traceback at most a few times a minute."""

    def __init__(self, ingest: HttpIngest) -> None:
        super().__init__("panicgw.http.requests", logging.DEBUG)
        self.ingest = ingest
        self.budget = LogBudget(3)

    def handle(self, record: logging.LogRecord) -> None:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is None:
            return  # aiohttp's debug chatter
        source = str(record.args[0]) if isinstance(record.args, tuple) and record.args else ""
        reason = request_error_reason(exc)
        if reason is not None:
            self.ingest.rejections.count(reason, _first_line(exc), path="wifi", source=source)
            return
        self.ingest.rejections.count("http_internal_error", _first_line(exc), path="wifi",
                                     source=source)
        held = self.budget.take()
        if held is not None:
            log.error("request handler failed: %s", record.getMessage(),
                      exc_info=record.exc_info,
                      extra={"fields": {"suppressed": held or None}})

Submit = Callable[[pl.Frame], Awaitable[pl.Outcome]]


class _Conn:
    """Books for one open connection: when it last finished something, whether a request
    is in a handler, how many requests it carried."""

    __slots__ = ("since", "busy", "requests")

    def __init__(self) -> None:
        self.since = time.monotonic()
        self.busy = False
        self.requests = 0


class _Tracked(asyncio.Protocol):
    """One connection: our books around aiohttp's protocol, which does all the HTTP. A
    connection over the cap is refused before aiohttp ever sees it."""

    __slots__ = ("_ingest", "_inner", "_transport")

    def __init__(self, ingest: HttpIngest) -> None:
        self._ingest = ingest
        self._inner: Any = None
        self._transport: asyncio.BaseTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        ing = self._ingest
        if len(ing._conns) >= ing.max_clients:
            ing.rejections.count("http_too_many_clients", "connection cap reached",
                                 path="wifi")
            transport.abort()
            return
        assert ing._runner is not None and ing._runner.server is not None
        self._inner = ing._runner.server()  # aiohttp's RequestHandler for this connection
        self._transport = transport
        ing._conns[transport] = _Conn()
        self._inner.connection_made(transport)

    def data_received(self, data: bytes) -> None:
        if self._inner is not None:
            self._inner.data_received(data)

    def eof_received(self) -> bool | None:
        return self._inner.eof_received() if self._inner is not None else None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._inner is not None:
            self._ingest._conns.pop(self._transport, None)
            self._inner.connection_lost(exc)
            self._inner = self._transport = None

    def pause_writing(self) -> None:
        if self._inner is not None:
            self._inner.pause_writing()

    def resume_writing(self) -> None:
        if self._inner is not None:
            self._inner.resume_writing()


class HttpIngest:
    def __init__(self, submit: Submit, rejections: pl.Rejections, *, host: str = "127.0.0.1",
                 port: int = 8080, max_body: int = 64, rate_per_s: float = 5.0,
                 rate_burst: int = 20, client_timeout_s: float = 10.0, max_clients: int = 2000,
                 ssl_context: ssl.SSLContext | None = None, gateway_id: str = "") -> None:
        self.submit = submit
        self.rejections = rejections
        self.host = host
        self.port = port
        self.max_body = max_body
        self.buckets = Buckets(rate_per_s, rate_burst)
        self.client_timeout_s = client_timeout_s
        self.max_clients = max_clients
        self.ssl_context = ssl_context
        self.gateway_id = gateway_id
        self.requests = 0
        self.accepting = True
        self._conns: dict[Any, _Conn] = {}  # a connection's transport -> its books
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
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
        info = self._conns.get(request.transport)
        if info is not None:
            info.busy = True
            info.requests += 1
        try:
            return await handler(request)
        finally:
            if info is not None:
                info.since = time.monotonic()
                info.busy = False

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
        except asyncio.CancelledError:
            # The client closed (or half-closed) the connection mid-body: aiohttp cancels
            # the handler. Counted like any broken body; the cancellation goes on.
            if self.accepting:
                self.rejections.count("http_bad_body", "connection closed before the body "
                                      "was complete", path="wifi", source=client)
            raise
        except web.RequestPayloadError as e:  # bad chunking, body cut short
            resp = self._reject("http_bad_body", request, 400,
                                f"malformed body: {_first_line(e.__cause__ or e)}")
            resp.force_close()
            return resp
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
            return web.Response(status=403, text=FORBIDDEN_BODY)
        return web.Response(status=503, text="not stored, retry\n", headers={"Retry-After": "2"})

    async def get_health(self, request: web.Request) -> web.Response:
        body: dict[str, Any] = {
            "status": "ok" if self.accepting else "draining",
            "gateway_id": self.gateway_id,
            "version": __version__,
            "protocol": frames.VERSION_1,
            "time": time.time(),
        }
        return web.json_response(body)

    # -- connection bookkeeping (slow clients, connection cap) ------------------------------------

    async def _sweep(self) -> None:
        period = max(0.05, min(1.0, self.client_timeout_s / 4))
        while True:
            await asyncio.sleep(period)
            now = time.monotonic()
            for transport, c in list(self._conns.items()):
                if not c.busy and now - c.since > self.client_timeout_s:
                    self._conns.pop(transport, None)
                    # Idle keep-alive after a request is normal; a connection that never
                    # completed a request line and headers in time is a slow client.
                    if c.requests == 0:
                        self.rejections.count("http_slow_client", "no request in time",
                                              path="wifi")
                    transport.close()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        self._runner = web.AppRunner(
            self.app(), access_log=None, handler_cancellation=True, logger=_RequestLog(self),
            keepalive_timeout=2 * self.client_timeout_s + 1, max_line_size=1024,
            max_field_size=2048, max_headers=64,
        )
        await self._runner.setup()
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            lambda: _Tracked(self), self.host, self.port, ssl=self.ssl_context, backlog=256,
            reuse_address=True)
        self.port = self._listener.sockets[0].getsockname()[1]
        self._sweeper = asyncio.create_task(self._sweep())
        log.info("HTTP ingest listening", extra={"fields": {
            "host": self.host, "port": self.port, "tls": self.ssl_context is not None}})

    async def stop(self) -> None:
        self.accepting = False
        if self._sweeper is not None:
            self._sweeper.cancel()
        if self._listener is not None:
            self._listener.close()  # no new connections; aiohttp closes the open ones
        if self._runner is not None:
            await self._runner.cleanup()
        if self._listener is not None:
            await self._listener.wait_closed()

    @property
    def connections(self) -> int:
        return len(self._conns)

