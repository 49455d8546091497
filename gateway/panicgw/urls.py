"""URL credentials (``user:password@``): shown and logged only redacted.

Here rather than in config so that both the config (``run --check``) and the forwarder's
logs can use them without the two importing each other.
"""

from __future__ import annotations

import urllib.parse


def redact_url(url: str) -> str:
    """``url`` with any userinfo (``user:password@``) replaced by ``***@``: the dispatch URL
    is shown in the status API, MQTT, diag and logs, its credentials never are."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return "***"
    if "@" not in p.netloc:
        return url
    host = p.netloc.rpartition("@")[2]
    return urllib.parse.urlunsplit((p.scheme, f"***@{host}", p.path, p.query, p.fragment))


def url_secrets(url: str) -> list[str]:
    """The userinfo parts of ``url`` (raw and percent-decoded), for redactors."""
    try:
        p = urllib.parse.urlsplit(url)
    except ValueError:
        return []
    userinfo = p.netloc.rpartition("@")[0] if "@" in p.netloc else ""
    out = [userinfo] if userinfo else []
    for part in (p.username, p.password):
        if part:
            out += [part, urllib.parse.unquote(part)]
    return [x for x in dict.fromkeys(out) if x]
