"""How findings put ages and failures into words a technician reads at a glance."""

from __future__ import annotations

import http.client
import socket
import ssl
import urllib.error


def fmt_age(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``, ``2.0 days`` (the sign is dropped)."""
    s = abs(seconds)
    if s < 120:
        text = f"{s:.0f} s"
    elif s < 7200:
        text = f"{s / 60:.0f} min"
    elif s < 172800:
        text = f"{s / 3600:.1f} h"
    else:
        text = f"{s / 86400:.1f} days"
    return text


def reason(e: BaseException) -> str:
    """Why a connection failed, in a few words (not a traceback's)."""
    if isinstance(e, urllib.error.HTTPError):
        return f"HTTP {e.code}"
    if isinstance(e, urllib.error.URLError):
        e = e.reason if isinstance(e.reason, BaseException) else e
    if isinstance(e, ConnectionRefusedError):
        return "connection refused"
    if isinstance(e, http.client.RemoteDisconnected):
        return "closed the connection without an HTTP answer"
    if isinstance(e, http.client.HTTPException):
        return f"answered something that is not HTTP: {str(e).strip()[:40]!r}"
    if isinstance(e, TimeoutError | socket.timeout):
        return "timed out"
    if isinstance(e, socket.gaierror):
        return f"name does not resolve ({e.strerror})"
    if isinstance(e, ssl.SSLCertVerificationError):
        return f"certificate not trusted: {e.verify_message}"
    if isinstance(e, OSError) and e.strerror:
        return e.strerror
    return str(e) or type(e).__name__
