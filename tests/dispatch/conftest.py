"""Fixtures for the dispatch/MQTT/supervision tests: an in-memory outbox, TLS material, payloads."""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from panicgw.forward.payload import build_payload, make_incident_id, priority_for
from panicgw.store import OutboxItem

SITE = {"name": "Toko Sinar Jaya", "kind": "shop", "address": "Jl. Merdeka 12, Bandung",
        "lat": -6.9147, "lon": 107.6098, "contact": "Bu Sari", "phone": "+62 812 0000 0000"}


def payload(event: str = "panic", device_id: int = 0x1234ABCD, counter: int = 0x00030001,
            gateway_id: str = "gw-1", at: float = 1_714_560_000.0, **kw: Any) -> dict[str, Any]:
    dev = event not in ("gateway_checkin", "gateway_trouble", "gateway_trouble_restore")
    kw.setdefault("paths", [{"path": "lora", "rssi": -97.5, "snr": 6.25, "at": at}] if dev
                  else [])
    return build_payload(
        incident_id=(make_incident_id(device_id, counter, event) if dev
                     else f"{gateway_id}-{event}-{int(at)}"),
        event=event,
        gateway_id=gateway_id,
        first_heard=at,
        site=SITE if dev else None,
        device={"id": device_id, "label": "till", "battery_mv": 3020, "firmware": "0.1.0"}
        if dev else None,
        counter=counter if dev else None,
        **kw,
    )


@dataclass
class Row:
    item: OutboxItem
    next_at: float
    state: str = "pending"
    status: int | None = None
    error: str = ""


class MemoryOutbox:
    """OutboxStore in memory with the SQLite store's ordering (priority, then oldest)."""

    def __init__(self) -> None:
        self.rows: dict[int, Row] = {}
        self.delivered_order: list[int] = []
        self.lock = threading.Lock()

    def add(self, body: dict[str, Any], at: float | None = None,
            priority: int | None = None) -> int:
        at = time.time() if at is None else at
        with self.lock:
            i = len(self.rows) + 1
            prio = priority_for(body["event"]) if priority is None else priority
            self.rows[i] = Row(OutboxItem(i, body["incident_id"], prio, body, 0, at), at)
            return i

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        with self.lock:
            rows = [r for r in self.rows.values() if r.state == "pending" and r.next_at <= now]
            rows.sort(key=lambda r: (r.item.priority, r.item.created_at, r.item.id))
            return [r.item for r in rows[:limit]]

    def delivered(self, item_id: int, at: float, status: int, body: str) -> None:
        with self.lock:
            r = self.rows[item_id]
            r.state, r.status = "delivered", status
            r.item = r.item._replace(attempts=r.item.attempts + 1)
            self.delivered_order.append(item_id)

    def reschedule(self, item_id: int, at: float, error: str) -> None:
        with self.lock:
            r = self.rows[item_id]
            if r.state == "pending":
                r.next_at, r.error = at, error
                r.item = r.item._replace(attempts=r.item.attempts + 1)

    def dead_letter(self, item_id: int, at: float, reason: str) -> None:
        with self.lock:
            r = self.rows[item_id]
            r.state, r.error = "dead", reason
            r.item = r.item._replace(attempts=r.item.attempts + 1)

    def states(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for r in self.rows.values():
            out[r.state] = out.get(r.state, 0) + 1
        return out


@pytest.fixture
def outbox() -> MemoryOutbox:
    return MemoryOutbox()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@dataclass
class Pki:
    dir: Path
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    other_ca: Path

    def server_context(self, require_client: bool = True) -> ssl.SSLContext:
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(self.ca))
        ctx.load_cert_chain(str(self.server_cert), str(self.server_key))
        ctx.verify_mode = ssl.CERT_REQUIRED if require_client else ssl.CERT_NONE
        return ctx


@pytest.fixture(scope="session")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Pki:
    """A private CA, a server cert for 127.0.0.1, a client cert, and an unrelated CA
    (made with the openssl CLI: the `cryptography` package is not installed here)."""
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI is needed to make test certificates")
    d = tmp_path_factory.mktemp("pki")
    ext = d / "server.ext"
    ext.write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\n")
    cext = d / "client.ext"
    cext.write_text("extendedKeyUsage=clientAuth\n")
    for ca in ("ca", "other"):
        _openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-nodes", "-keyout", f"{ca}.key", "-out", f"{ca}.pem", "-days", "2",
                 "-subj", f"/CN=panic test {ca}", cwd=d)
    for name, e in (("server", ext), ("client", cext)):
        _openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
                 "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", f"/CN={name}",
                 cwd=d)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
                 "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", str(e),
                 cwd=d)
    return Pki(d, d / "ca.pem", d / "server.pem", d / "server.key", d / "client.pem",
               d / "client.key", d / "other.pem")


class LiveDispatch:
    """The recording dispatch server (panicgw.dispatch_server) on a loop thread of its own,
    for tests that drive a gateway process synchronously."""

    def __init__(self, **kw: Any) -> None:
        import asyncio

        from panicgw.dispatch_server.server import DispatchServer

        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.srv = DispatchServer(**kw)
        self.call(self.srv.start())

    def call(self, coro: Any) -> Any:
        import asyncio

        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(10)

    def run(self, fn: Any, *args: Any) -> Any:
        """``fn(*args)`` on the server's loop (its state is only touched there)."""
        async def wrap() -> Any:
            return fn(*args)
        return self.call(wrap())

    def received(self) -> list[Any]:
        return self.run(lambda: list(self.srv.received))

    def events(self, kind: str) -> list[dict[str, Any]]:
        return [r.body for r in self.received()
                if isinstance(r.body, dict) and r.body.get("event") == kind]

    def close(self) -> None:
        self.call(self.srv.stop())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@pytest.fixture
def live_dispatch() -> Any:
    d = LiveDispatch()
    yield d
    d.close()
