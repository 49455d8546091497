"""The dispatch contract (docs/dispatch-api.md) in code: the events path, the body's JSON
Schema (and the site kinds and reception paths it allows) and the ``X-Panic-Signature``
HMAC. The forwarder signs with it; the reference receiver and the police console check with
it, so all three agree by construction.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema

SIGNATURE_HEADER = "X-Panic-Signature"
SCHEMA_PATH = Path(__file__).resolve().parents[1] / "schemas" / "dispatch-event.schema.json"
EVENTS_PATH = "/v1/events"
MAX_BODY = 64 * 1024  # a gateway's body is ~1 KB


@cache
def schema() -> dict[str, Any]:
    return json.loads(SCHEMA_PATH.read_text())


@cache
def validator() -> jsonschema.Draft202012Validator:
    jsonschema.Draft202012Validator.check_schema(schema())
    return jsonschema.Draft202012Validator(schema())


def _site_object() -> dict[str, Any]:
    return next(alt for alt in schema()["properties"]["site"]["oneOf"]
                if alt.get("type") == "object")


# What a body's ``site.kind`` and ``paths[].path`` may be: the schema's enums (the gateway's
# registry.SITE_KINDS/PATHS must equal them; tests/dispatch/test_contract_enums.py).
SITE_KINDS: tuple[str, ...] = tuple(_site_object()["properties"]["kind"]["enum"])
PATHS: tuple[str, ...] = tuple(schema()["properties"]["paths"]["items"]["properties"]["path"]
                               ["enum"])


def schema_errors(body: Any) -> list[str]:
    """Every schema violation as ``path: message`` (empty when valid)."""
    return [
        f"{'/'.join(str(p) for p in e.absolute_path) or '<root>'}: {e.message}"
        for e in sorted(validator().iter_errors(body), key=lambda e: list(e.absolute_path))
    ]


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``X-Panic-Signature`` value: ``t=<unix>,v1=<hex HMAC-SHA256(secret, b"<t>." + body)>``."""
    mac = hmac.new(secret, str(timestamp).encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"t={timestamp},v1={mac}"


def verify_signature(secret: bytes, header: str, body: bytes, now: float,
                     tolerance_s: float = 300.0) -> str | None:
    """Check a signature header; None when valid, else the reason (for dispatch receivers)."""
    fields: dict[str, str] = {}
    for part in header.split(","):
        k, sep, v = part.strip().partition("=")
        if sep:
            fields.setdefault(k, v)
    try:
        t = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        return "malformed signature header"
    if abs(now - t) > tolerance_s:
        return "signature timestamp outside tolerance"
    want = hmac.new(secret, str(t).encode() + b"." + body, hashlib.sha256).hexdigest()
    if not hmac.compare_digest(want.encode(), given.encode()):
        return "bad signature"
    return None
