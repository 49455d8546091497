"""One delivery to dispatch: the signed POST of an outbox item, and what the answer means.

- 2xx, or 409 (dispatch already holds this ``Idempotency-Key``): delivered.
- 401/403: dispatch refuses our credentials (token, signing secret, clock, client
  certificate): ``auth``, something a technician fixes; nothing is dropped for it.
- any other 4xx but 408/425/429: ``dead``, repeating the same request cannot succeed.
- everything else (5xx, 408/425/429, timeouts, connection and TLS failures): ``retry``,
  with dispatch's ``Retry-After`` when it sent one.

The body is signed (HMAC-SHA256 over ``<t>.<body>``, forward.contract) and carries an
``Idempotency-Key`` derived from the incident, equal on every gateway (see
forward.payload.idempotency_key). The URL may carry credentials (user:password@): it is
shown and logged only redacted (:meth:`DispatchClient.scrub`, :class:`ScrubFilter`).
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
from collections.abc import Callable
from typing import Any, NamedTuple

import aiohttp

from panicgw import __version__
from panicgw.forward.contract import SIGNATURE_HEADER, sign
from panicgw.forward.payload import rfc3339
from panicgw.tls import client_context
from panicgw.urls import redact_url, url_secrets

RETRYABLE_4XX = (408, 425, 429)
ALREADY_HAVE = 409  # dispatch already holds this Idempotency-Key: delivered
AUTH_FAILED = (401, 403)  # our credentials: fix the config, never drop what is queued


class Answer(NamedTuple):
    kind: str  # "delivered" | "retry" | "dead" | "auth"
    status: int | None
    reason: str  # counter key: "http_500", "timeout", "connect", "tls", ...
    detail: str
    retry_after: float | None = None


class DispatchClient:
    """Posts outbox items to the dispatch URL with the gateway's credentials."""

    def __init__(self, url: str, *, gateway_id: str, token: str = "",
                 secret: str | bytes = b"", ca_file: str | None = None,
                 client_cert: str | None = None, client_key: str | None = None,
                 timeout_s: float = 10.0, clock: Callable[[], float]) -> None:
        if not url.startswith(("https://", "http://")):
            raise ValueError("dispatch url must start with https:// (or http:// for local tests)")
        self.url = url
        self.shown_url = redact_url(url)
        self._url_secrets = sorted(url_secrets(url), key=len, reverse=True)
        self.log_filter = ScrubFilter(self.scrub) if self._url_secrets else None
        self.gateway_id = gateway_id
        self._token = token
        self._secret = secret.encode() if isinstance(secret, str) else bytes(secret)
        self._ssl = (client_context(ca_file, client_cert, client_key)
                     if url.startswith("https://") else None)
        self.timeout_s = timeout_s
        self._clock = clock

    def scrub(self, text: str) -> str:
        """``text`` without the dispatch URL's credentials (error texts can quote the URL)."""
        for secret in self._url_secrets:
            text = text.replace(secret, "***")
        return text

    def headers(self, item: Any, body: bytes) -> dict[str, str]:
        payload = item.payload
        key = payload.get("idempotency_key") or hashlib.sha256(
            f"{item.incident_id}|{payload.get('event', '')}".encode()
        ).hexdigest()[:32]
        h = {
            "Content-Type": "application/json",
            "Idempotency-Key": key,
            "User-Agent": f"panicgw/{__version__}",
            "X-Panic-Gateway": self.gateway_id,
            "X-Panic-Attempt": str(item.attempts + 1),
        }
        if self._token:
            h["Authorization"] = f"Bearer {self._token}"
        if self._secret:
            h[SIGNATURE_HEADER] = sign(self._secret, int(self._clock()), body)
        return h

    async def post(self, session: aiohttp.ClientSession, item: Any) -> Answer:
        """POST ``item`` (its ``times.forwarded`` stamped now); never raises for dispatch's or
        the network's trouble."""
        payload = copy.deepcopy(item.payload)
        if isinstance(payload.get("times"), dict):
            payload["times"]["forwarded"] = rfc3339(self._clock())
        body = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
        try:
            async with session.post(
                self.url, data=body, headers=self.headers(item, body), ssl=self._ssl,
                allow_redirects=False,
            ) as resp:
                text = (await resp.text(errors="replace"))[:2000]
                status = resp.status
                retry_after = _retry_after(resp.headers.get("Retry-After"))
        except TimeoutError:
            return Answer("retry", None, "timeout", f"no answer within {self.timeout_s} s")
        except aiohttp.ClientConnectorCertificateError as e:
            return Answer("retry", None, "tls", f"certificate rejected: {e.certificate_error}")
        except aiohttp.ClientSSLError as e:
            return Answer("retry", None, "tls", str(e))
        except aiohttp.ClientConnectorError as e:
            return Answer("retry", None, "connect", str(e.os_error or e))
        except aiohttp.ClientError as e:
            return Answer("retry", None, "http_error", f"{type(e).__name__}: {e}")
        except OSError as e:
            return Answer("retry", None, "connect", str(e))
        except ValueError as e:  # a request aiohttp refuses to build (bad header, URL)
            return Answer("retry", None, "request", f"{type(e).__name__}: {e}")
        if 200 <= status < 300 or status == ALREADY_HAVE:
            return Answer("delivered", status, "ok", text)
        if status in AUTH_FAILED:
            return Answer("auth", status, f"http_{status}", text[:300], retry_after)
        if 400 <= status < 500 and status not in RETRYABLE_4XX:
            return Answer("dead", status, f"http_{status}", text[:300])
        return Answer("retry", status, f"http_{status}", text[:300], retry_after)


class ScrubFilter(logging.Filter):
    """Removes the dispatch URL's credentials from a logger's records (messages, arguments
    and tracebacks), whatever quoted the URL."""

    def __init__(self, scrub: Callable[[str], str]) -> None:
        super().__init__()
        self._scrub = scrub

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
            record.exc_info, record.exc_text = None, None
        record.msg, record.args = self._scrub(text), None
        return True


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
