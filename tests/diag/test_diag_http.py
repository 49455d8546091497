"""`panicgw diag`'s HTTP-ingest check (`http`) as a technician meets its failures: the daemon
stopped with the port free, another program on the configured port (plain TCP, a broker, an
aiohttp app that is not the gateway), Wi-Fi ingest disabled, a running daemon whose config
was edited without a restart, and a non-HTTP program on the status port. Each asserts
status, the fix in the hint and the CLI's exit code (0 all pass, 1 warnings, 2 failures)."""

from __future__ import annotations

import contextlib
import socket
import socketserver
import threading
from collections.abc import Iterator

from aiohttp import web
from diagkit import Gateway, LoopThread, by_id, rest_level
from test_diag_running import running_daemon

from panicgw import diag

ANOTHER_PROGRAM = "sudo ss -ltnp"


@contextlib.contextmanager
def banner_server(banner: bytes) -> Iterator[int]:
    """A TCP service that is not HTTP (it greets with ``banner`` and hangs up), on a free port."""

    class Greeter(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            self.request.sendall(banner)

    srv = socketserver.TCPServer(("127.0.0.1", 0), Greeter)
    t = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    t.start()
    try:
        yield int(srv.server_address[1])
    finally:
        srv.shutdown()
        srv.server_close()
        t.join(5)


@contextlib.contextmanager
def silent_listener() -> Iterator[int]:
    """A program that listens but never answers (the kernel completes the handshake)."""
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    s.listen(8)
    try:
        yield int(s.getsockname()[1])
    finally:
        s.close()


@contextlib.contextmanager
def other_web_app(loop: LoopThread, routes: list[web.RouteDef]) -> Iterator[int]:
    """An aiohttp app that is not the gateway, on a free port."""

    async def start() -> web.AppRunner:
        app = web.Application()
        app.add_routes(routes)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        return runner

    runner = loop.run(start())
    try:
        yield int(runner.addresses[0][1])
    finally:
        loop.run(runner.cleanup())


def http_result(gw: Gateway, *args: str) -> tuple[int, dict]:
    code, doc = gw.diag(*args)
    r = by_id(doc)
    assert r["daemon"]["status"] == "FAIL"  # stopped in all but the last test
    assert code == 2
    return rest_level(doc), r["http"]  # the level the http check (and the rest) implies


def test_daemon_stopped_nothing_on_the_port_skips_and_says_start_it(gw):
    code, r = http_result(gw)
    assert r["status"] == "SKIP"
    assert "nothing listening on 127.0.0.1:" in r["finding"]
    assert "connection refused" in r["finding"] and "daemon is stopped" in r["finding"]
    assert "systemctl start panicgw" in r["hint"]
    assert code == 0  # only the stopped daemon fails; the http check adds nothing


def test_non_http_program_on_the_port_fails(gw):
    with banner_server(b"SSH-2.0-OpenSSH_9.6\r\n") as port:
        gw.overrides["http"] = {"port": port}
        code, r = http_result(gw)
    assert r["status"] == "FAIL"
    assert f"not the gateway holds 127.0.0.1:{port}" in r["finding"]
    assert "SSH-2.0-OpenSSH_9.6" in r["finding"]
    assert ANOTHER_PROGRAM in r["hint"] and "[http] port" in r["hint"]
    assert "Start panicgw" not in r["hint"]  # starting it would only hit a bind error
    assert code == 2


def test_silent_listener_on_the_port_fails(gw):
    with silent_listener() as port:
        gw.overrides["http"] = {"port": port}
        code, r = http_result(gw, "--set", "probe_timeout_s=0.5")
    assert r["status"] == "FAIL" and "timed out" in r["finding"]
    assert f"127.0.0.1:{port}" in r["finding"]
    assert ANOTHER_PROGRAM in r["hint"]
    assert code == 2


def test_mqtt_broker_on_the_ingest_port_fails(gw, mosquitto):
    gw.overrides["http"] = {"port": mosquitto}  # [http] port = the broker's port by mistake
    code, r = http_result(gw)
    assert r["status"] == "FAIL"
    assert f"not the gateway holds 127.0.0.1:{mosquitto}" in r["finding"]
    assert ANOTHER_PROGRAM in r["hint"]
    assert code == 2


def test_web_app_without_our_health_endpoint_fails(gw, loop_thread):
    async def index(request: web.Request) -> web.Response:
        return web.Response(text="<h1>router admin</h1>", content_type="text/html")

    with other_web_app(loop_thread, [web.get("/", index)]) as port:
        gw.overrides["http"] = {"port": port}
        code, r = http_result(gw)
    assert r["status"] == "FAIL"
    assert f"http://127.0.0.1:{port}/v1/health answered HTTP 404" in r["finding"]
    assert ANOTHER_PROGRAM in r["hint"] and "[http] port" in r["hint"]
    assert code == 2


def test_web_app_with_its_own_health_json_is_not_taken_for_the_gateway(gw, loop_thread):
    async def health(request: web.Request) -> web.Response:
        return web.json_response({"status": "ok", "uptime": 12})

    async def page(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    with other_web_app(loop_thread, [web.get("/v1/health", health)]) as port:
        gw.overrides["http"] = {"port": port}
        code, r = http_result(gw)
    assert r["status"] == "FAIL"
    assert "answered HTTP 200, not the gateway's health JSON" in r["finding"]
    assert ANOTHER_PROGRAM in r["hint"]
    assert code == 2
    with other_web_app(loop_thread, [web.get("/v1/health", page)]) as port:
        gw.overrides["http"] = {"port": port}
        code, r = http_result(gw)
    assert r["status"] == "FAIL" and "HTTP 200" in r["finding"]
    assert code == 2


def test_wifi_ingest_disabled_skips(gw):
    gw.overrides["http"] = {"enabled": False}
    code, r = http_result(gw)
    assert r["status"] == "SKIP" and "[http] enabled = false" in r["finding"]
    assert code == 0


def test_invalid_config_skips():
    r = diag.check_http(diag.Context(None))
    assert r.status == diag.SKIP and "configuration is invalid" in r.finding


def test_running_daemon_config_edited_without_restart_fails(gw):
    with running_daemon(gw):
        code, doc = gw.diag()
        assert by_id(doc)["http"]["status"] == "PASS"  # the daemon's own listener answers
        assert code == 0
        # The technician moves ingest to another address in the config but does not restart:
        # the daemon still listens on 127.0.0.1, nothing answers on the new address.
        gw.overrides["http"] = {"host": "127.0.0.2"}
        code, doc = gw.diag()
    r = by_id(doc)
    assert r["daemon"]["status"] == "PASS"
    assert r["http"]["status"] == "FAIL"
    assert "daemon runs but nothing answers http://127.0.0.2:" in r["http"]["finding"]
    assert "connection refused" in r["http"]["finding"]
    assert "journalctl -u panicgw" in r["http"]["hint"]
    assert "[http] host/port" in r["http"]["hint"]
    assert code == 2


def test_non_http_program_on_the_status_port_does_not_crash_diag(gw):
    # The status API port (how diag finds a running daemon) held by a non-HTTP service.
    with banner_server(b"220 mail.example ESMTP\r\n") as port:
        gw.overrides["status"] = {"port": port}
        code, doc = gw.diag()
    r = by_id(doc)
    assert r["daemon"]["status"] == "FAIL" and "not answering" in r["daemon"]["finding"]
    assert "not HTTP" in r["daemon"]["finding"]
    assert r["http"]["status"] == "SKIP"
    assert (code, rest_level(doc)) == (2, 0)
