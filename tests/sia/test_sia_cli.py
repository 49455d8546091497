"""`panicgw sia test` as a process against pysiaalarm's receiver (plain TCP, encrypted UDP),
a scripted receiver answering DUH, and a receiver that is down: the exchange printed byte
for byte, the exit code, the advice, and the sequence number taken from the gateway DB."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from panicgw.store import Store

from .siakit import ACCOUNT, TEXT_KEYS, PySiaReceiver, ScriptedReceiver, ack, dead_endpoint

CLI = [sys.executable, "-c", "from panicgw.cli import app; app()"]


class LoopThread:
    """The receivers' asyncio loop on a thread; the CLI runs as a process."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def call(self, coro: Any, timeout: float = 10.0) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)


def _config(tmp_path: Path, port: int, *, protocol: str = "tcp", key: str = "",
            db: bool = True) -> Path:
    data = tmp_path / "data"
    data.mkdir(exist_ok=True)
    if db:
        Store(data / "gateway.db").close()
    toml = tmp_path / "gateway.toml"
    toml.write_text(
        f'[gateway]\nid = "gw-test"\ndata_dir = "{data}"\n'
        f'[[sia]]\nname = "centre"\nhost = "127.0.0.1"\nport = {port}\n'
        f'protocol = "{protocol}"\naccount = "{ACCOUNT}"\nreceiver = 1\nline = 1\n'
        f'key = "{key}"\nkey_format = "text"\nack_timeout_s = 1\ntries = 1\n')
    return toml


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, "sia", "test", *args], capture_output=True, text=True,
                          timeout=60)


def test_link_test_and_test_event_against_pysiaalarm(tmp_path: Path) -> None:
    loop = LoopThread()
    centre = PySiaReceiver("tcp")
    try:
        loop.call(centre.__aenter__())
        toml = _config(tmp_path, centre.port)
        res = _cli("-c", str(toml))
        assert res.returncode == 0, res.stdout + res.stderr
        sent, reply = res.stdout.splitlines()[1:3]
        assert sent.startswith("-> tcp://127.0.0.1:") and '"NULL"0001R1L1#1234[]_' in sent
        assert sent.split("  ", 1)[1].startswith("<LF>") and sent.endswith("<CR>")
        assert reply.startswith("<- ") and '"ACK"0001R1L1#1234[]' in reply
        assert "ACK from" in res.stdout

        res = _cli("-c", str(toml), "--name", "centre", "--event", "test", "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert (doc["outcome"], doc["seq"], doc["event"]) == ("delivered", 2, "test")
        [x] = doc["exchanges"]
        assert '"SIA-DCS"0002R1L1#1234[#1234|Nri1/RX000][Igateway gw-test]_' in x["sent"]
        assert '"ACK"0002' in x["replies"][0]
        events = loop.call(centre.wait_events(2))  # pysiaalarm reports a NULL message as RP
        assert [(e.code, e.account, e.sequence) for e in events] == [
            ("RP", ACCOUNT, "0001"), ("RX", ACCOUNT, "0002")]
        s = Store(tmp_path / "data" / "gateway.db", readonly=True)
        try:
            assert s.route_seq("sia:centre") == 2  # a running daemon never reuses them
        finally:
            s.close()
    finally:
        loop.call(centre.__aexit__(None, None, None))
        loop.close()


def test_encrypted_udp_test_event(tmp_path: Path) -> None:
    loop = LoopThread()
    key = TEXT_KEYS[128]
    centre = PySiaReceiver("udp", key)
    try:
        loop.call(centre.__aenter__())
        res = _cli("-c", str(_config(tmp_path, centre.port, protocol="udp", key=key, db=False)),
                   "--event", "test", "--json")
        assert res.returncode == 0, res.stdout + res.stderr
        doc = json.loads(res.stdout)
        assert '"*SIA-DCS"' in doc["exchanges"][0]["sent"]
        assert '"*ACK"' in doc["exchanges"][0]["replies"][0]
        assert [e.code for e in loop.call(centre.wait_events(1))] == ["RX"]
    finally:
        loop.call(centre.__aexit__(None, None, None))
        loop.close()


def test_duh_is_refused_with_advice(tmp_path: Path) -> None:
    loop = LoopThread()
    centre = ScriptedReceiver(lambda n, raw: [ack(raw, "DUH")])
    try:
        loop.call(centre.__aenter__())
        res = _cli("-c", str(_config(tmp_path, centre.endpoint.port)), "--event", "test")
        assert res.returncode == 1, res.stdout + res.stderr
        assert '"DUH"' in res.stdout and "does not understand" in res.stderr
        assert "account 1234" in res.stderr
    finally:
        loop.call(centre.__aexit__(None, None, None))
        loop.close()


def test_receiver_down_and_bad_arguments(tmp_path: Path) -> None:
    toml = _config(tmp_path, dead_endpoint().port)
    res = _cli("-c", str(toml), "--json")
    assert res.returncode == 4, res.stdout + res.stderr
    doc = json.loads(res.stdout)
    assert doc["outcome"] == "retry" and "receiver runs" in doc["advice"]
    res = _cli("-c", str(toml))
    assert res.returncode == 4 and "no valid answer" in res.stderr and "firewall" in res.stderr
    res = _cli("-c", str(toml), "--name", "other")
    assert res.returncode == 2 and "configured: centre" in res.stderr
    res = _cli("-c", str(toml), "--event", "panic")
    assert res.returncode == 2 and "link or test" in res.stderr


def test_the_docs_example_is_what_the_command_prints() -> None:
    """docs/sia.md's `panicgw sia test` example: real frames, spelled as the command does."""
    from panicgw.cli.sia import spell
    from panicgw.forward.sia.frame import wrap

    doc = (Path(__file__).resolve().parents[2] / "docs" / "sia.md").read_text()
    sent = spell(wrap('"NULL"0042R1L1#1234[]_12:00:00,05-01-2024'))
    reply = spell(wrap('"ACK"0042R1L1#1234[]'))
    assert f"-> tcp://receiver.centre.example:12000  {sent}\n" in doc
    assert f"<- tcp://receiver.centre.example:12000  {reply}\n" in doc
