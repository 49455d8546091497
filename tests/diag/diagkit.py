"""Real parts for the diag tests: a pty peer speaking panicproto.link like the bridge, B's
dispatch receiver (HTTPS, real token and signature checks) on a background event loop, a
private mosquitto, a real gateway DB, and a TOML config pointing at all of them."""

from __future__ import annotations

import asyncio
import json
import os
import select
import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from panicgw.cli import app
from panicgw.dispatch_server.server import DispatchServer
from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import Store
from panicproto import link

KEY = bytes.fromhex("8899aabbccddeeff0011223344556677")
DEV = 0x00C0FFEE
TOKEN = "tok-Very-Secret-4711"
SECRET = "sig-Shared-Secret-0815"
MQTT_PASSWORD = "mqtt-Pass-Word-31337"
MOSQUITTO = "/usr/sbin/mosquitto"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class BridgePeer:
    """The far end of a pty that answers PING, STATUS and CONFIG as the bridge firmware
    does (CONFIG: applied and answered with STATUS, or refused with a LOG when
    ``config_refusal`` is set, or ignored when ``answer_config`` is False)."""

    def __init__(self, link_path: Path, status: dict[str, Any] | None = None) -> None:
        self.link_path = link_path
        self.status = status or {"firmware": "bridge 0.1.0", "radio": {
            "frequency_mhz": 921.4, "sf": 9, "bw_hz": 125000, "cr": 5,
            "tx_power": 14}, "noise_floor_dbm": -117.5}
        self.answer = True
        self.answer_config = True
        self.config_refusal = ""
        self.pings = 0
        self._master: int | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def plug(self) -> None:
        master, slave = os.openpty()
        name = os.ttyname(slave)
        os.close(slave)
        self.link_path.unlink(missing_ok=True)
        self.link_path.symlink_to(name)
        self._master = master
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def unplug(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2)
        if self._master is not None:
            os.close(self._master)
            self._master = None
        self.link_path.unlink(missing_ok=True)

    def rx(self, radio: bytes, rssi: int, snr: float) -> None:
        """The bridge heard ``radio`` over the air: send it up as an RX message."""
        assert self._master is not None
        os.write(self._master, link.encode(link.RX, 7, link.rx_payload(radio, rssi, snr)))

    def _run(self) -> None:
        dec = link.Decoder()
        fd = self._master
        assert fd is not None
        while not self._stop.is_set():
            r, _, _ = select.select([fd], [], [], 0.05)
            if not r:
                continue
            try:
                data = os.read(fd, 4096)
            except OSError:  # nobody has the slave open right now
                time.sleep(0.02)
                continue
            for msg in dec.feed(data):
                if not self.answer:
                    continue
                if msg.kind == link.PING:
                    self.pings += 1
                    os.write(fd, link.encode(link.PONG, msg.seq, msg.payload))
                elif msg.kind == link.STATUS:
                    os.write(fd, link.encode(link.LOG, 0, b"status requested"))
                    os.write(fd, link.encode(link.STATUS, msg.seq,
                                             json.dumps(self.status).encode()))
                elif msg.kind == link.CONFIG and self.answer_config:
                    if self.config_refusal:
                        os.write(fd, link.encode(link.LOG, msg.seq, (
                            "config rejected: " + self.config_refusal).encode()))
                        continue
                    self.status["radio"] = json.loads(msg.payload)
                    os.write(fd, link.encode(link.STATUS, msg.seq,
                                             json.dumps(self.status).encode()))


class LoopThread:
    """An asyncio loop in a thread, so async servers serve while diag runs synchronously."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)
        self.loop.close()


def make_cert(d: Path, days: int) -> tuple[Path, Path]:
    if shutil.which("openssl") is None:
        pytest.fail("openssl CLI is needed to make test certificates")
    cert, key = d / f"cert{days}.pem", d / f"key{days}.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days",
                    str(days), "-subj", "/CN=127.0.0.1", "-addext",
                    "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture(scope="session")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[int, tuple[Path, Path]]:
    d = tmp_path_factory.mktemp("pki")
    return {90: make_cert(d, 90), 5: make_cert(d, 5)}


class Gateway:
    """A stopped gateway on disk: config, DB with one registered device, and its peers."""

    def __init__(self, root: Path, loop: LoopThread, certs: dict[int, tuple[Path, Path]]):
        self.root = root
        self.data = root / "data"
        self.loop = loop
        self.certs = certs
        self.config = root / "gateway.toml"
        self.bridge = BridgePeer(root / "ttyBRIDGE")
        self.bridge.plug()
        self.dispatch: DispatchServer | None = None
        self.overrides: dict[str, dict[str, Any]] = {}
        self.store = Store(self.data / "gateway.db")
        site = SiteRecord("Toko Sinar", "shop", "Jl. Asia Afrika 8, Bandung", -6.9217,
                          107.6071, "Ibu Sari", "+62 812 0000 0000")
        self.store.upsert_device(DeviceRecord(device_id=DEV, key=KEY, site=site, label="kasir",
                                              paths=["lora", "wifi"], supervision_s=600,
                                              firmware="0.1.0"),
                                 now=time.time() - 86400)  # registered yesterday
        with self.store.transaction():
            self.store.heard(DEV, time.time() - 60, "lora", -101.0, 7.5, 3700, False)
        self.start_dispatch(token=TOKEN, cert_days=90)

    def start_dispatch(self, token: str = TOKEN, cert_days: int = 90) -> None:
        import ssl

        if self.dispatch is not None:
            self.loop.run(self.dispatch.stop())
        cert, key = self.certs[cert_days]
        sctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        sctx.load_cert_chain(str(cert), str(key))
        self.dispatch = DispatchServer(token=token, secret=SECRET, ssl_context=sctx)
        self.loop.run(self.dispatch.start())
        self.ca_file = cert

    def write_config(self) -> Path:
        assert self.dispatch is not None
        doc: dict[str, dict[str, Any]] = {
            "gateway": {"id": "gw-test", "data_dir": str(self.data)},
            "serial": {"port": str(self.bridge.link_path)},
            "http": {"host": "127.0.0.1", "port": free_port()},
            "status": {"port": free_port()},
            "dispatch": {"url": self.dispatch.url, "token": TOKEN, "secret": SECRET,
                         "ca_file": str(self.ca_file)},
        }
        for sec, kv in self.overrides.items():
            doc.setdefault(sec, {}).update(kv)
        lines = []
        for sec, kv in doc.items():
            lines.append(f"[{sec}]")
            lines += [f"{k} = {json.dumps(v)}" for k, v in kv.items()]
        self.config.write_text("\n".join(lines) + "\n")
        self.config.chmod(0o600)
        return self.config

    def diag(self, *args: str) -> tuple[int, dict[str, Any]]:
        self.write_config()
        res = CliRunner().invoke(app, ["diag", "-c", str(self.config), "--json", *args])
        assert res.exception is None or isinstance(res.exception, SystemExit), res.output
        return res.exit_code, json.loads(res.stdout)

    def close(self) -> None:
        self.bridge.unplug()
        if self.dispatch is not None:
            self.loop.run(self.dispatch.stop())
        self.store.close()


@pytest.fixture
def loop_thread() -> Iterator[LoopThread]:
    lt = LoopThread()
    yield lt
    lt.close()


@pytest.fixture
def gw(tmp_path: Path, loop_thread: LoopThread,
       certs: dict[int, tuple[Path, Path]]) -> Iterator[Gateway]:
    g = Gateway(tmp_path, loop_thread, certs)
    yield g
    g.close()


def by_id(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["id"]: r for r in doc["results"]}


def rest_level(doc: dict[str, Any], ignore: tuple[str, ...] = ("daemon",)) -> int:
    """The exit code the results imply without ``ignore`` (a stopped daemon is a FAIL of its
    own, so the stopped-gateway tests read the level of the injected fault from this)."""
    sev = {"PASS": 0, "SKIP": 0, "WARN": 1, "FAIL": 2}
    return max((sev[r["status"]] for r in doc["results"] if r["id"] not in ignore), default=0)


@pytest.fixture
def mosquitto(tmp_path: Path) -> Iterator[int]:
    """A private broker on a free port (fails, not skips, in CI when it is missing)."""
    if not os.path.exists(MOSQUITTO):
        if os.environ.get("CI") == "true":
            pytest.fail(f"{MOSQUITTO} missing in CI")
        pytest.skip("mosquitto not installed")
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n")
    proc = subprocess.Popen([MOSQUITTO, "-c", str(conf)], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        end = time.monotonic() + 10
        while time.monotonic() < end:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                time.sleep(0.05)
        else:
            pytest.fail("mosquitto did not start")
        yield port
    finally:
        proc.terminate()
        proc.wait(5)
