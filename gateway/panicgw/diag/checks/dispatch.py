"""``dispatch``: the dispatch centre is reachable, accepts this gateway's credentials, and
its TLS certificate is trusted and not about to expire.

The probes use the forwarder's own TLS settings and signing (``forward``), so what passes
here is what the forwarder does; the running daemon's forwarder, which may still hold
credentials loaded before a config fix, has the last word on ``dispatch.auth``.
"""

from __future__ import annotations

import socket
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request

from panicgw.diag.context import FAIL, PASS, SKIP, WARN, Context, Result
from panicgw.diag.redact import url_without_userinfo
from panicgw.diag.wording import fmt_age, reason
from panicgw.tls import client_context

PROBE_BODY = b'{"probe":"panicgw-diag"}'
AUTH_TITLE = "Dispatch accepts our credentials"


def dispatch_probe(url: str, token: str, secret: str, sctx: ssl.SSLContext | None,
                   timeout: float) -> tuple[int | None, str]:
    """(HTTP status, what was sent) of an authenticated request that creates no incident.

    The dispatch contract (docs/dispatch-api.md, panicgw.dispatch_server) has no health probe,
    so we POST to the events URL exactly as the forwarder does (bearer token, signature over
    the body) but with a body that is not a valid event, ``{"probe":"panicgw-diag"}``.
    Dispatch checks credentials before the schema: 401/403 means the token or signature is
    refused; 400/422 means they were accepted and the body (by design) rejected; no incident
    is ever created. (status None = not reachable)."""
    from panicgw.forward.contract import SIGNATURE_HEADER, sign

    headers = {"User-Agent": "panicgw-diag", "Content-Type": "application/json",
               "X-Panic-Probe": "1"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    if secret:
        headers[SIGNATURE_HEADER] = sign(secret.encode(), int(time.time()), PROBE_BODY)
    req = urllib.request.Request(url, data=PROBE_BODY, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=timeout, context=sctx) as r:
            return r.status, "a signed probe POST"
    except urllib.error.HTTPError as e:
        return e.code, "a signed probe POST"
    except (OSError, ValueError) as e:
        return None, f"not reachable ({reason(e)})"


def check_dispatch(ctx: Context) -> list[Result]:
    title = "Dispatch reachable"
    if ctx.cfg is None:
        return [Result("dispatch", title, SKIP, "not checked: the configuration is invalid")]
    d = ctx.cfg.dispatch
    url = d["url"]
    if not url:
        return [Result("dispatch", title, FAIL,
                       "no dispatch URL configured: alarms are stored but sent nowhere",
                       "Set [dispatch] url, token and secret (from the dispatch centre), then "
                       "restart panicgw.")]
    shown = url_without_userinfo(url)
    parts = urllib.parse.urlsplit(url)
    out: list[Result] = []
    try:
        sctx = client_context(d["ca_file"], d["client_cert"], d["client_key"]) if (
            parts.scheme == "https") else None
    except (OSError, ssl.SSLError) as e:
        return [Result("dispatch", title, FAIL, f"cannot load TLS files: {reason(e)}",
                       "Check [dispatch] ca_file / client_cert / client_key paths and that "
                       "the service user can read them.")]
    code, detail = dispatch_probe(url, d["token"], d["secret"], sctx,
                                  ctx.thresholds.probe_timeout_s)
    if code is None:
        out.append(Result("dispatch", title, FAIL, f"{shown}: {detail}",
                          "Check the gateway's internet link (`ping`, `curl -v` the URL), DNS, "
                          "the firewall and that the dispatch service is up; pending alarms "
                          "stay in the outbox and are retried."))
        auth = Result("dispatch.auth", AUTH_TITLE, SKIP, "dispatch not reachable")
    else:
        out.append(_reachable(shown, code))
        auth = _credentials(code, detail, bool(d["token"]))
    out.append(_running_auth(ctx, auth))
    if parts.scheme == "http":
        out.append(Result("dispatch.insecure", "Dispatch over plain HTTP", WARN,
                          "[dispatch] allow_insecure_http = true: the bearer token, the "
                          "signature and every alarm cross the network unencrypted",
                          "Use the dispatch centre's https:// URL and remove "
                          "allow_insecure_http (it is meant for a receiver on this machine "
                          "or a test bench)."))
    if not d["secret"]:
        out.append(Result("dispatch.signing", "Dispatch body signing", WARN,
                          "no [dispatch] secret: bodies are not signed",
                          "Set [dispatch] secret (shared with dispatch) so it can verify "
                          "that alarms come from this gateway."))
    out.append(tls_expiry(parts, sctx, ctx))
    return out


def _reachable(shown: str, code: int) -> Result:
    title = "Dispatch reachable"
    if code >= 500:
        return Result("dispatch", title, FAIL, f"{shown} answered HTTP {code}",
                      "The dispatch service reports an internal error: tell the "
                      "dispatch centre's operators; alarms are kept and retried.")
    if code in (404, 405):
        return Result("dispatch", title, FAIL,
                      f"{shown} answered HTTP {code}: this URL does not take events",
                      "Check [dispatch] url against docs/dispatch-api.md (it ends in "
                      "/v1/events); deliveries would be dead-lettered.")
    return Result("dispatch", title, PASS, f"{shown} answered HTTP {code}")


def _credentials(code: int, detail: str, has_token: bool) -> Result:
    if code in (401, 403):
        return Result("dispatch.auth", AUTH_TITLE, FAIL,
                      f"dispatch rejected our token or signature (HTTP {code})",
                      "Ask the dispatch centre for this gateway's token and signing "
                      "secret and set [dispatch] token / secret, then restart panicgw; "
                      "until then nothing is sent (alarms are kept and retried, never "
                      "dead-lettered): phone alarms in.")
    if code >= 500 or code in (404, 405):
        return Result("dispatch.auth", AUTH_TITLE, SKIP,
                      f"cannot tell: dispatch answered HTTP {code}")
    if not has_token:
        return Result("dispatch.auth", AUTH_TITLE, WARN,
                      f"no [dispatch] token configured; dispatch answered HTTP {code}",
                      "Set [dispatch] token if the dispatch centre issues one.")
    return Result("dispatch.auth", AUTH_TITLE, PASS,
                  f"token and signature accepted (HTTP {code} to {detail}, "
                  "which creates no incident)")


def _running_auth(ctx: Context, probe: Result) -> Result:
    """The running daemon's forwarder knows better than one probe: it may still use the
    credentials it loaded at start (config fixed but not restarted), or dispatch may refuse
    it for a reason the probe does not hit (403 by client certificate or address)."""
    fwd = (ctx.status or {}).get("dispatch")
    if not isinstance(fwd, dict) or not fwd.get("auth_failed"):
        return probe
    n = fwd.get("auth_failures") or 0
    since = fwd.get("auth_failed_since")
    age = f" for {fmt_age(ctx.now - since)}" if isinstance(since, (int, float)) else ""
    status = fwd.get("last_status")
    running = (f"the running daemon's deliveries are refused (HTTP {status}, {n} times"
               f"{age}); nothing is sent, messages are kept and retried")
    data = {**probe.data, "daemon_auth_failed": True, "auth_failures": n,
            "auth_failed_since": since}
    if probe.status == PASS:
        return Result("dispatch.auth", probe.title, FAIL,
                      f"{running}, although this config's credentials are accepted",
                      "The daemon still uses the token/secret/certificate it loaded at start: "
                      "restart panicgw (`sudo systemctl restart panicgw`) to load the fixed "
                      "config. Phone pending alarms in meanwhile.", data)
    return Result("dispatch.auth", probe.title, FAIL, f"{probe.finding}; {running}",
                  probe.hint or "Ask the dispatch centre for this gateway's token, signing "
                  "secret and client certificate; check the clock (`timedatectl`), then "
                  "restart panicgw.", data)


def tls_expiry(parts: urllib.parse.SplitResult, sctx: ssl.SSLContext | None,
               ctx: Context) -> Result:
    title = "Dispatch TLS certificate"
    if parts.scheme != "https" or sctx is None:
        return Result("dispatch.tls", title, SKIP,
                      "no TLS: the dispatch URL is plain http (see dispatch.insecure)")
    host = parts.hostname or ""
    port = parts.port or 443
    try:
        with socket.create_connection((host, port), timeout=ctx.thresholds.probe_timeout_s) as s:
            with sctx.wrap_socket(s, server_hostname=host) as tls:
                cert = tls.getpeercert()
    except ssl.SSLCertVerificationError as e:
        return Result("dispatch.tls", title, FAIL,
                      f"certificate of {host} not trusted: {e.verify_message}",
                      "If dispatch uses a private CA, set [dispatch] ca_file to its "
                      "certificate; otherwise the server's chain is broken or expired.")
    except (OSError, ssl.SSLError) as e:
        return Result("dispatch.tls", title, SKIP, f"no TLS handshake ({reason(e)})")
    not_after = ssl.cert_time_to_seconds(cert["notAfter"]) if cert else None
    if not_after is None:
        return Result("dispatch.tls", title, WARN, "server sent no certificate details",
                      "Check the server's TLS configuration.")
    left = not_after - ctx.now
    when = time.strftime("%Y-%m-%d", time.gmtime(not_after))
    data = {"not_after": when, "days_left": round(left / 86400, 1)}
    if left <= 0:
        return Result("dispatch.tls", title, FAIL, f"certificate expired on {when}",
                      "The dispatch centre must renew its certificate now.", data)
    if left < ctx.thresholds.tls_expiry_warn_days * 86400:
        return Result("dispatch.tls", title, WARN,
                      f"certificate expires on {when} ({left / 86400:.0f} days)",
                      "Tell the dispatch centre to renew it before then.", data)
    return Result("dispatch.tls", title, PASS,
                  f"valid until {when} ({left / 86400:.0f} days)", data)
