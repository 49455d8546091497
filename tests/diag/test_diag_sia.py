"""`panicgw diag`'s `sia` check against a real `panicgw run`: FAIL when the link to the
receiver is down and when it refuses an alarm with DUH (each with the fix), WARN when its
NAK shows a clock more than 60 s from ours, PASS when it ACKs, SKIP without [[sia]] or
without a running daemon."""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

_TESTS = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(_TESTS / "gateway"), str(_TESTS / "sia")]

from gwkit import post_frame, uplink, wait_until  # noqa: E402
from gwproc import GatewayProcess  # noqa: E402
from siakit import ScriptedReceiver, ack, dead_endpoint, nak  # noqa: E402

CLI = [sys.executable, "-c", "from panicgw.cli import app; app()"]


class LoopThread:
    """The receiver's asyncio loop on a thread; the gateway and diag run as processes."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _sia(port: int, **kw: Any) -> dict[str, Any]:
    return {"sia": [{"name": "centre", "host": "127.0.0.1", "port": port, "account": "1234",
                     "receiver": 1, "line": 1, "ack_timeout_s": 1, "tries": 1,
                     "link_test_s": 10, **kw}]}


def _diag(config: Path) -> dict[str, dict[str, Any]]:
    res = subprocess.run([*CLI, "diag", "-c", str(config), "--only", "sia", "--json"],
                         capture_output=True, text=True, timeout=60)
    return {r["id"]: r for r in json.loads(res.stdout)["results"]}


def _sia_state(gw: GatewayProcess) -> dict[str, Any]:
    return gw.status()["sia"][0]


def test_link_down_fails_and_skip_without_daemon(tmp_path: Path) -> None:
    with GatewayProcess(tmp_path, **_sia(dead_endpoint().port)) as gw:
        assert wait_until(lambda: _sia_state(gw)["link_ok"] is False, 20.0)
        r = _diag(gw.config)["sia.centre"]
        assert r["status"] == "FAIL" and "link down" in r["finding"], r
        assert "panicgw sia test --name centre" in r["hint"]
    r = _diag(gw.config)["sia.centre"]
    assert r["status"] == "SKIP" and "not running" in r["finding"]


def test_refused_alarm_fails(tmp_path: Path) -> None:
    loop = LoopThread()

    def script(n: int, raw: bytes) -> list[Any]:
        return [ack(raw) if b'"NULL"' in raw else ack(raw, "DUH")]  # every event refused

    rx = ScriptedReceiver(script)
    try:
        loop.call(rx.__aenter__())
        with GatewayProcess(tmp_path, **_sia(rx.endpoint.port, link_test_s=30)) as gw:
            assert wait_until(lambda: _sia_state(gw)["link_ok"] is not None, 20.0)
            assert post_frame(gw.http_port, uplink(counter=0x00300001, wifi=True)) == 200
            assert wait_until(lambda: _sia_state(gw)["alarms_refused"] >= 1, 20.0)
            results = _diag(gw.config)
            r = results["sia.centre"]
            assert r["status"] == "FAIL" and "DUH" in r["finding"], r
            assert "account" in r["hint"] and "phone" in r["hint"]
    finally:
        loop.call(rx.__aexit__(None, None, None))
        loop.close()


def test_clock_offset_warns_and_ack_passes(tmp_path: Path) -> None:
    loop = LoopThread()
    naks: list[int] = []

    def script(n: int, raw: bytes) -> list[Any]:
        if not naks:
            naks.append(n)
            return [nak(time.time() + 300.0)]
        return [ack(raw)]

    rx = ScriptedReceiver(script)
    try:
        loop.call(rx.__aenter__())
        with GatewayProcess(tmp_path, **_sia(rx.endpoint.port, link_test_s=30)) as gw:
            assert wait_until(lambda: _sia_state(gw)["link_ok"] is True
                              and _sia_state(gw)["outbox"]["pending"] == 0, 20.0)
            results = _diag(gw.config)
            assert results["sia.centre"]["status"] == "PASS", results
            clock = results["sia.centre.clock"]
            # The NAK's timestamp has whole seconds: 300 s of skew reads +299 to +301 s.
            offset = re.search(r"clock is \+(\d+) s from ours", clock["finding"])
            assert clock["status"] == "WARN" and offset and 299 <= int(offset[1]) <= 301, clock
            assert "timedatectl" in clock["hint"]
    finally:
        loop.call(rx.__aexit__(None, None, None))
        loop.close()


def test_skip_without_sia(tmp_path: Path) -> None:
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'[gateway]\nid = "gw"\ndata_dir = "{tmp_path}"\n')
    r = _diag(toml)["sia"]
    assert r["status"] == "SKIP" and "no [[sia]]" in r["finding"]
