"""``http``: the Wi-Fi buttons' HTTP ingest answers with the gateway's own health JSON (and
not another program that took its port)."""

from __future__ import annotations

import http.client
import json
import socket
import ssl
import urllib.error
import urllib.request

from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result, skip_no_config
from panicgw.diag.wording import reason


def _accepts(host: str, port: int, timeout: float) -> bool:
    """Whether anything accepts TCP connections on host:port (ours or another program)."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError:
        return False
    return True


def _own_listener_tls() -> ssl.SSLContext:
    """Unverified TLS: a liveness probe of our own listener on localhost, not a check of
    its certificate."""
    sctx = ssl.create_default_context()
    sctx.check_hostname = False
    sctx.verify_mode = ssl.CERT_NONE
    return sctx


def check_http(ctx: Context) -> Result:
    title = "HTTP ingest (Wi-Fi buttons)"
    if (r := skip_no_config(ctx, "http", title)) is not None:
        return r
    h = ctx.cfg.http  # type: ignore[union-attr]
    if not h["enabled"]:
        return Result("http", title, SKIP, "Wi-Fi ingest disabled ([http] enabled = false)")
    host = h["host"]
    host = "127.0.0.1" if host in ("0.0.0.0", "") else ("::1" if host == "::" else host)
    port = int(h["port"])
    st_http = (ctx.status or {}).get("http")
    if isinstance(st_http, dict) and isinstance(st_http.get("port"), int):
        port = st_http["port"]
    scheme = "https" if h["tls_cert"] else "http"
    url = f"{scheme}://{'[' + host + ']' if ':' in host else host}:{port}/v1/health"
    try:
        with urllib.request.urlopen(url, timeout=ctx.thresholds.probe_timeout_s,
                                    context=_own_listener_tls() if scheme == "https" else None
                                    ) as r:
            body = r.read(65536)
            code = r.status
    except urllib.error.HTTPError as e:
        body, code = e.read(65536), e.code
    except (OSError, http.client.HTTPException) as e:  # BadStatusLine: not HTTP at all
        if ctx.running:
            return Result("http", title, FAIL,
                          f"daemon runs but nothing answers {url} ({reason(e)})",
                          "Check `journalctl -u panicgw` for a bind error; another program may "
                          "hold the port; check [http] host/port and the firewall.")
        if _accepts(host, port, ctx.thresholds.probe_timeout_s):
            # Something holds the port but does not speak the gateway's HTTP: panicgw would
            # fail to bind there, so "start panicgw" would be the wrong advice.
            return Result("http", title, FAIL,
                          f"a program that is not the gateway holds {host}:{port} (it accepts "
                          f"connections; the HTTP probe: {reason(e)}); the daemon is stopped",
                          "Another program holds the port, so panicgw cannot start its Wi-Fi "
                          "ingest: find it with `sudo ss -ltnp`, move it or change [http] port.")
        return Result("http", title, SKIP if isinstance(
            e, ConnectionRefusedError) or "refused" in reason(e) else WARN,
            f"nothing listening on {host}:{port} ({reason(e)}); the daemon is stopped",
            "Start panicgw (`sudo systemctl start panicgw`).")
    try:
        doc = json.loads(body)
    except ValueError:
        doc = None
    # The gateway's health JSON names its gateway and protocol; any other JSON is not ours.
    if code == 200 and isinstance(doc, dict) and "gateway_id" in doc and "protocol" in doc:
        return Result("http", title, PASS, f"{url} answers ({doc.get('status', 'ok')})")
    return Result("http", title, FAIL,
                  f"{url} answered HTTP {code}, not the gateway's health JSON",
                  "Another program holds the port: find it with `sudo ss -ltnp`, "
                  "move it or change [http] port.")
