"""`panicgw dispatch-server`: a local dispatch receiver that shows what the gateway sends."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import ssl
from pathlib import Path
from typing import Any

import typer
from rich.console import Console

from panicgw.dispatch_server.server import DispatchServer, Received
from panicgw.forward.contract import EVENTS_PATH
from panicgw.tls import server_context

EXIT_USAGE = 2
EXIT_CANNOT_LISTEN = 3


def _fail(msg: str, code: int = EXIT_USAGE) -> None:
    typer.echo(f"error: {msg}", err=True)
    raise typer.Exit(code)


def _ssl_context(cert: Path | None, key: Path | None, client_ca: Path | None
                 ) -> ssl.SSLContext | None:
    if cert is None and key is None:
        if client_ca is not None:
            _fail("--client-ca needs --tls-cert and --tls-key (client certs need TLS)")
        return None
    if cert is None or key is None:
        _fail("--tls-cert and --tls-key go together")
    try:
        ctx = server_context(str(cert), str(key), str(client_ca) if client_ca else None)
    except (OSError, ssl.SSLError) as e:
        _fail(f"cannot load TLS files: {e}")
        return None
    return ctx


def _summary(rec: Received) -> str:
    b: dict[str, Any] = rec.body if isinstance(rec.body, dict) else {}
    cid = b.get("contact_id") or {}
    site = b.get("site") or {}
    dev = b.get("device") or {}
    where = f" {site.get('name')} ({site.get('lat')}, {site.get('lon')})" if site else ""
    who = f" device {dev.get('id')}" if dev else ""
    color = "green" if rec.status == 200 else "red"
    head = f"[{color}]{rec.status} {rec.verdict}[/{color}]"
    if not b:
        return f"{head} {'; '.join(rec.errors)}"
    text = (f"{head} {b.get('event')} {cid.get('display', '')} {b.get('incident_id')}"
            f"{who}{where} presses={b.get('press_count')} gw={b.get('gateway_id')}")
    if rec.errors:
        text += " [red]" + "; ".join(rec.errors[:3]) + "[/red]"
    return text


def dispatch_server(
    port: int = typer.Option(8099, "--port", "-p", help="TCP port to listen on (0 = any)."),
    host: str = typer.Option("127.0.0.1", "--host",
                             help="Address to bind; 0.0.0.0 to accept other machines."),
    token: str = typer.Option("", "--token", envvar="PANICGW_DISPATCH_TOKEN",
                              help="Require 'Authorization: Bearer <token>' (env var keeps it"
                                   " out of the process list)."),
    secret: str = typer.Option("", "--secret", envvar="PANICGW_DISPATCH_SECRET",
                               help="Require a valid X-Panic-Signature made with this secret."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Serve HTTPS with this cert."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key for --tls-cert."),
    client_ca: Path | None = typer.Option(None, "--client-ca",
                                          help="Require client certificates signed by this CA."),
    fail: int = typer.Option(0, "--fail", min=0, max=599,
                             help="Answer every request with this HTTP status (e.g. 500 to"
                                  " watch the gateway retry, 401 to see a dead letter)."),
    delay: float = typer.Option(0.0, "--delay", min=0.0,
                                help="Wait this many seconds before answering (timeouts)."),
    record: Path | None = typer.Option(None, "--record",
                                       help="Append every request as a JSON line to this file."),
    as_json: bool = typer.Option(False, "--json",
                                 help="Print each request as one JSON line (for scripts)."),
) -> None:
    """Run a reference dispatch receiver and show every event a gateway sends.

    It checks what docs/dispatch-api.md specifies: bearer token, HMAC signature, the JSON Schema and the Idempotency-Key (a repeat is answered 200 "duplicate").

    Point a gateway at it (config: dispatch.url = "http://127.0.0.1:8099/v1/events", with the same token and secret) to see exactly what dispatch will receive.

    Exit codes: 0 stopped with Ctrl-C/SIGTERM, 2 bad arguments, 3 cannot listen.
    """  # noqa: E501
    ctx = _ssl_context(tls_cert, tls_key, client_ca)
    console = Console(stderr=as_json)
    out = record.open("a", encoding="utf-8") if record is not None else None

    def show(rec: Received) -> None:
        line = json.dumps(rec.to_dict(), separators=(",", ":"))
        if out is not None:
            out.write(line + "\n")
            out.flush()
        if as_json:
            typer.echo(line)
        else:
            console.print(_summary(rec), highlight=False)

    srv = DispatchServer(host, port, token=token, secret=secret, ssl_context=ctx,
                         on_request=show)
    if fail:
        srv.fail(fail, delay_s=delay)
    elif delay:
        srv.fail(None, delay_s=delay)

    async def main() -> None:
        try:
            await srv.start()
        except OSError as e:
            _fail(f"cannot listen on {host}:{port}: {e.strerror or e}; pick another --port",
                  EXIT_CANNOT_LISTEN)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        checks = [c for c, on in (("token", token), ("signature", secret)) if on]
        console.print(
            f"dispatch receiver listening on [bold]{srv.url}[/bold]"
            f" (checks: {', '.join(checks + ['schema', 'idempotency'])};"
            f" POST {EVENTS_PATH}, GET /v1/received)",
            highlight=False,
        )
        if not token or not secret:
            console.print("[yellow]warning: without --token and --secret anyone can post"
                          " events here; real dispatch must require both[/yellow]")
        await stop.wait()
        await srv.stop()

    try:
        asyncio.run(main())
    finally:
        if out is not None:
            with contextlib.suppress(OSError):
                out.close()
