"""The DC-09 route in a real `panicgw run`, beside the JSON route: pysiaalarm as the
centre's receiver, the recording dispatch server as dispatch. An alarm reaches both; with
the receiver down the JSON route still delivers at once and the DC-09 route delivers when
the receiver returns, under the number stored for it; a SIGKILL in the middle of a DC-09
exchange loses nothing, and the restarted gateway resends under the stored number."""

from __future__ import annotations

import asyncio
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "gateway"))

from gwharness import DispatchThread  # noqa: E402
from gwkit import free_port, post_frame, uplink, wait_until  # noqa: E402
from gwproc import GatewayProcess  # noqa: E402

from panicgw.store import Store  # noqa: E402

from .siakit import PySiaReceiver, ScriptedReceiver  # noqa: E402

ROUTE = "sia:centre"


class LoopThread:
    """An asyncio loop on a thread, for the receivers (the test itself is synchronous)."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _sections(dispatch: DispatchThread, port: int, protocol: str = "tcp") -> dict[str, Any]:
    return {
        "dispatch": {"url": dispatch.srv.url, "allow_insecure_http": True},
        "pipeline": {"incident_window_s": 0},  # every press its own incident
        "sia": [{"name": "centre", "host": "127.0.0.1", "port": port, "account": "1234",
                 "protocol": protocol,
                 "receiver": 1, "line": 1, "ack_timeout_s": 1, "link_test_s": 0}],
    }


def _routes(gw: GatewayProcess) -> list[dict[str, Any]]:
    """The alarms' rows on the DC-09 route (the start-up check-in goes too: not counted)."""
    s = Store(gw.data / "gateway.db", readonly=True)
    try:
        return [r for r in s.route_list(("pending", "delivered", "dead"))
                if r["event"] == "panic"]
    finally:
        s.close()


def _alarms(dispatch: DispatchThread) -> list[dict[str, Any]]:
    return [b for b in dispatch.bodies() if b["event"] == "panic"]


def _ha(rx: PySiaReceiver) -> list[Any]:
    return [e for e in rx.events if e.code == "HA"]


def test_alarm_reaches_both_routes_and_a_down_receiver_delays_only_its_own(
        tmp_path: Path) -> None:
    # UDP: pysiaalarm's stop leaves open TCP connections answering (asyncio.Server.close
    # on 3.11 keeps them), so only over UDP is its stop a real outage.
    loop, dispatch, port = LoopThread(), DispatchThread(), free_port()
    rx = PySiaReceiver("udp", port=port)
    loop.call(rx.__aenter__())
    try:
        with GatewayProcess(tmp_path, **_sections(dispatch, port, "udp")) as gw:
            assert post_frame(gw.http_port, uplink(counter=0x00100001, wifi=True)) == 200
            assert wait_until(lambda: len(_alarms(dispatch)) == 1 and len(_ha(rx)) == 1)
            assert _ha(rx)[0].account == "1234"
            assert wait_until(lambda: [r["state"] for r in _routes(gw)] == ["delivered"])
            (first,) = _routes(gw)
            assert int(_ha(rx)[0].sequence) == first["seq"]

            loop.call(rx.__aexit__(None, None, None))  # the centre's receiver goes down
            assert post_frame(gw.http_port, uplink(counter=0x00100002, wifi=True)) == 200
            assert wait_until(lambda: len(_alarms(dispatch)) == 2, 5.0)  # JSON: at once
            assert wait_until(lambda: any(r["state"] == "pending" and r["attempts"] >= 1
                                          for r in _routes(gw)))
            waiting = next(r for r in _routes(gw) if r["state"] == "pending")
            st = gw.status()["sia"][0]
            assert st["route"] == ROUTE and st["outbox"]["pending_alarms"] == 1

            rx = PySiaReceiver("udp", port=port)  # back, on the same address
            loop.call(rx.__aenter__())
            assert wait_until(lambda: len(_ha(rx)) == 1, 30.0)
            assert int(_ha(rx)[0].sequence) == waiting["seq"] > first["seq"]
            assert wait_until(lambda: all(r["state"] == "delivered" for r in _routes(gw)))
            assert len(_alarms(dispatch)) == 2
    finally:
        loop.call(rx.__aexit__(None, None, None))
        dispatch.close()
        loop.close()


def test_sigkill_mid_exchange_resends_under_the_stored_number(tmp_path: Path) -> None:
    loop, dispatch, port = LoopThread(), DispatchThread(), free_port()
    silent = ScriptedReceiver(lambda n, raw: [], port=port)  # takes frames, never answers
    loop.call(silent.__aenter__())
    rx: PySiaReceiver | None = None
    try:
        with GatewayProcess(tmp_path, **_sections(dispatch, port)) as gw:
            assert post_frame(gw.http_port, uplink(counter=0x00200001, wifi=True)) == 200
            assert wait_until(lambda: any(b"HA" in f for f in silent.frames))
            assert gw.proc is not None
            gw.proc.kill()  # SIGKILL while it waits for the receiver's answer
            gw.proc.wait(10)
        sent = next(f for f in silent.frames if b"HA" in f)
        sent_seq = sent.split(b'"')[2][:4].decode()
        loop.call(silent.__aexit__(None, None, None))
        rx = PySiaReceiver(port=port)
        loop.call(rx.__aenter__())
        with GatewayProcess(tmp_path, **_sections(dispatch, port)) as gw:
            assert wait_until(lambda: len(_ha(rx)) >= 1, 30.0)
            assert _ha(rx)[0].sequence == sent_seq
            assert wait_until(lambda: [r["state"] for r in _routes(gw)] == ["delivered"])
            assert {e.sequence for e in _ha(rx)} == {sent_seq}
    finally:
        if rx is not None:
            loop.call(rx.__aexit__(None, None, None))
        dispatch.close()
        loop.close()
