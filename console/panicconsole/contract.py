"""The dispatch contract (docs/dispatch-api.md), as the gateway defines it.

This is the ONLY module of the console that imports from ``panicgw``: the signature check,
the header name, the events path, the body's JSON Schema and the site kinds and reception
paths it allows come from the gateway's contract module (``panicgw.forward.contract``), so
the console checks exactly what the gateway signs and ``panicgw dispatch-server`` checks.
"""

from __future__ import annotations

import hmac
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from panicgw.forward.contract import (
    EVENTS_PATH,
    MAX_BODY,
    PATHS,
    SCHEMA_PATH,
    SIGNATURE_HEADER,
    SITE_KINDS,
    schema_errors,
    verify_signature,
)

__all__ = ["EVENTS_PATH", "MAX_BODY", "PATHS", "SCHEMA_PATH", "SIGNATURE_HEADER", "SITE_KINDS",
           "Verdict", "check", "schema_path"]


@dataclass
class Verdict:
    """What the contract says about one request, before idempotency (which needs the store).

    ``status`` 200 means "valid: store it (or answer duplicate)"; anything else is the answer.
    """

    status: int
    verdict: str
    body: Any = None
    errors: list[str] = field(default_factory=list)


def schema_path() -> Path:
    """The JSON Schema file of the dispatch body (draft 2020-12)."""
    return Path(SCHEMA_PATH)


def _parse(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, ValueError):
        return None


def check(headers: Mapping[str, str], content_type: str, raw: bytes, *, token: str,
          secret: bytes, now: float, tolerance_s: float = 300.0) -> Verdict:
    """Token, signature, content type, JSON, schema and Idempotency-Key, in the reference
    receiver's order and with its statuses and verdict names (401/415/400/422)."""
    if token:
        auth = headers.get("Authorization", "")
        want = f"Bearer {token}".encode()
        if not hmac.compare_digest(auth.encode(), want):
            return Verdict(401, "bad_token", None,
                           ["Authorization: Bearer <token> missing or wrong"])
    if secret:
        sig = headers.get(SIGNATURE_HEADER)
        if not sig:
            return Verdict(401, "no_signature", None, [f"{SIGNATURE_HEADER} header missing"])
        why = verify_signature(secret, sig, raw, now, tolerance_s)
        if why:
            return Verdict(401, "bad_signature", None, [why])
    if content_type != "application/json":
        return Verdict(415, "bad_content_type", None, ["Content-Type must be application/json"])
    body = _parse(raw)
    if body is None:
        return Verdict(400, "bad_json", None, ["body is not JSON"])
    errors = schema_errors(body)
    if errors:
        return Verdict(422, "schema", body, errors)
    key = headers.get("Idempotency-Key")
    if not key:
        return Verdict(400, "no_idempotency_key", body, ["Idempotency-Key header missing"])
    if key != body["idempotency_key"]:
        return Verdict(400, "key_mismatch", body, ["Idempotency-Key differs from the body's"])
    return Verdict(200, "valid", body, [])
