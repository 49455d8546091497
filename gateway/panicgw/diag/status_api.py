"""The running daemon's local status API, as the technician's commands reach it.

`panicgw diag`, `monitor` and `outbox` ask the daemon for live state instead of guessing
from the DB; they find it where the daemon says it listens (``<data_dir>/runtime.json``,
written at start with the port it really bound) or, failing that, where the config says.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import urllib.request
from typing import Any

from panicgw import config as gwconfig
from panicgw.diag.wording import reason


def pid_alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (also one of another user)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def status_endpoint(cfg: gwconfig.Config) -> tuple[str, int] | None:
    """Where the daemon's status API listens: runtime.json (actual port) or the config."""
    s = cfg.status
    if not s["enabled"]:
        return None
    host = s["host"]
    if host in ("0.0.0.0", ""):
        host = "127.0.0.1"
    elif host == "::":
        host = "::1"
    port = int(s["port"])
    runtime = cfg.data_dir / "runtime.json"
    with contextlib.suppress(OSError, ValueError, TypeError):
        info = json.loads(runtime.read_text())
        pid = int(info.get("pid") or 0)
        if pid > 0 and info.get("status_port") and pid_alive(pid):
            port = int(info["status_port"])
    return host, port


def base_url(host: str, port: int) -> str:
    return f"http://{'[' + host + ']' if ':' in host else host}:{port}"


def fetch_status(cfg: gwconfig.Config, timeout: float
                 ) -> tuple[dict[str, Any] | None, str | None, str | None]:
    """(the daemon's ``/v1/status`` reply, why there is none, the URL asked)."""
    ep = status_endpoint(cfg)
    if ep is None:
        return None, "status API disabled in config ([status] enabled = false)", None
    host, port = ep
    url = base_url(host, port) + "/v1/status"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            doc = json.loads(r.read(2_000_000))
        if not isinstance(doc, dict):
            raise ValueError("status reply is not a JSON object")
    except (OSError, ValueError, http.client.HTTPException) as e:  # not HTTP: not ours
        return None, f"status API at {host}:{port} not answering ({reason(e)})", url
    return doc, None, url


def get_json(url: str, timeout: float, max_bytes: int) -> Any:
    """GET ``url`` as JSON; None when nothing (or not JSON) answers."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as r:
            return json.loads(r.read(max_bytes))
    except (OSError, ValueError, http.client.HTTPException):
        return None
