"""A real Gateway (daemon.Gateway) running in a background thread with its own event loop,
so blocking clients (adafruit_requests, pyserial peers) can talk to it from the test."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from typing import Any

from panicgw import config
from panicgw.daemon import Gateway
from panicgw.store.service import STATUS


def make_config(tmp_path: Path, **sections: dict[str, Any]):
    doc: dict[str, dict[str, Any]] = {
        "gateway": {"id": "gw-test", "data_dir": str(tmp_path / "data"), "log_format": "text"},
        "http": {"enabled": True, "host": "127.0.0.1", "port": 0},
        "serial": {"enabled": False},
        "status": {"enabled": True, "port": 0},
    }
    for name, body in sections.items():
        doc.setdefault(name, {}).update(body)
    return config.from_dict(doc, "<test>")


class GatewayThread:
    def __init__(self, cfg) -> None:
        self.cfg = cfg
        self.loop = asyncio.new_event_loop()
        self.gw: Gateway | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> GatewayThread:
        self._thread.start()
        self.gw = self.call(self._start())
        return self

    async def _start(self) -> Gateway:
        gw = Gateway(self.cfg)
        await gw.start()
        return gw

    def call(self, coro, timeout: float = 30.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def run(self, fn, *args):
        async def wrap():
            return fn(*args)
        return self.call(wrap())

    @property
    def url(self) -> str:
        assert self.gw is not None and self.gw.http is not None
        scheme = "https" if self.gw.http.ssl_context else "http"
        return f"{scheme}://127.0.0.1:{self.gw.http.port}"

    def status(self) -> dict[str, Any]:
        return self.call(self.gw.status())

    def db(self, fn, *args):
        """``fn(store, *args)`` on the daemon's status read lane, as the daemon reads."""
        return self.call(self.gw.store.read(STATUS, fn, *args))

    def __exit__(self, *exc) -> None:
        try:
            if self.gw is not None:
                self.call(self.gw.stop(drain_s=5.0))
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(5)


class DispatchThread:
    """panicgw.dispatch_server.server (the recording dispatch) on its own loop thread."""

    def __init__(self) -> None:
        from panicgw.dispatch_server.server import DispatchServer

        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()
        self.srv = DispatchServer()
        self.call(self.srv.start())

    def call(self, coro, timeout: float = 10.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def bodies(self) -> list[dict]:
        async def get():
            return [r.body for r in self.srv.received if r.status == 200]
        return self.call(get())

    def close(self) -> None:
        self.call(self.srv.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
