"""Redaction: no token, signing secret, password or device key reaches the terminal, the
JSON or a support bundle.

Findings carry text from the config, from servers and from the DB, so every one passes
through a :class:`Redactor` that knows the secrets by value (also a config that does not
validate: :func:`secrets_in_toml`), and masks any value under a secret-sounding key.
"""

from __future__ import annotations

import contextlib
import re
import tomllib
import urllib.parse
from collections.abc import Iterable
from pathlib import Path
from typing import Any

REDACTED = "***REDACTED***"
SECRET_KEY_RE = re.compile(r"(key|token|secret|password|passwd|credential)", re.I)
# Secret-sounding names whose values are not secret: file paths and derived identifiers.
NOT_SECRET_KEYS = ("tls_key", "client_key", "idempotency_key")


def secret_name(key: str) -> bool:
    """Whether a value under ``key`` is a secret (``dispatch.token``, not ``ca_file``)."""
    return bool(SECRET_KEY_RE.search(key)) and not key.endswith(("_file", "_at")) and (
        key not in NOT_SECRET_KEYS)


class Redactor:
    """Replaces every known secret string (and its hex forms) in text and JSON-like data."""

    def __init__(self, secrets: Iterable[str | bytes] = ()) -> None:
        self.secrets: set[str] = set()
        for s in secrets:
            self.add(s)

    def add(self, secret: str | bytes | None) -> None:
        if not secret:
            return
        if isinstance(secret, bytes):
            self.secrets.update({secret.hex(), secret.hex().upper()})
            with contextlib.suppress(UnicodeDecodeError):
                text = secret.decode("utf-8")
                if len(text) >= 4 and text.isprintable():
                    self.secrets.add(text)
            return
        if len(secret) >= 4:  # shorter "secrets" would redact ordinary words
            self.secrets.add(secret)

    def text(self, value: str) -> str:
        for s in sorted(self.secrets, key=len, reverse=True):
            if s in value:
                value = value.replace(s, REDACTED)
        return value

    def data(self, value: Any, key: str = "") -> Any:
        """Deep copy with secret-named keys masked and known secrets replaced."""
        if isinstance(value, dict):
            return {k: self.data(v, str(k)) for k, v in value.items()}
        if isinstance(value, list | tuple):
            return [self.data(v, key) for v in value]
        if isinstance(value, bytes):
            return REDACTED if secret_name(key) else value.hex()
        if isinstance(value, str):
            if value and secret_name(key):
                return REDACTED
            return self.text(value)
        return value


def secrets_in_toml(path: Path | None) -> list[str]:
    """Every string under a secret-looking key in a TOML file, even if it does not validate."""
    if path is None:
        return []
    try:
        doc = tomllib.loads(path.read_text("utf-8", errors="replace"))
    except (OSError, tomllib.TOMLDecodeError):
        return []
    out: list[str] = []

    def walk(node: Any, key: str) -> None:
        if isinstance(node, dict):
            for k, v in node.items():
                walk(v, str(k))
        elif isinstance(node, str | int | float) and not isinstance(node, bool) and (
                secret_name(key)):
            out.append(str(node))

    walk(doc, "")
    return out


def url_without_userinfo(url: str) -> str:
    """``url`` as a finding may show it: no user, password, query or fragment."""
    p = urllib.parse.urlsplit(url)
    if p.username or p.password:
        netloc = p.hostname or ""
        if p.port:
            netloc += f":{p.port}"
        return urllib.parse.urlunsplit((p.scheme, netloc, p.path, "", ""))
    return urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, "", ""))
