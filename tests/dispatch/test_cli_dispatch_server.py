"""`panicgw dispatch-server` as a process: receives, verifies, prints JSON lines, exits cleanly."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from panicgw.forward.forwarder import Forwarder

from .conftest import MemoryOutbox, free_port, payload

PANICGW = [str(Path(sys.executable).with_name("panicgw"))]


def test_cli_receives_and_prints_json(tmp_path: Path) -> None:
    port = free_port()
    rec = tmp_path / "rec.jsonl"
    env = {**os.environ, "PANICGW_DISPATCH_TOKEN": "tok", "PANICGW_DISPATCH_SECRET": "sec"}
    proc = subprocess.Popen([*PANICGW, "dispatch-server", "--port", str(port), "--json",
                             "--record", str(rec)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        banner = proc.stderr.readline().decode()
        assert f"127.0.0.1:{port}/v1/events" in banner, banner

        async def send() -> MemoryOutbox:
            store = MemoryOutbox()
            store.add(payload("panic"))
            store.add(payload("tamper"))
            fwd = Forwarder(store, f"http://127.0.0.1:{port}/v1/events", gateway_id="gw-1",
                            token="tok", secret="sec", poll_s=0.05, backoff_base_s=0.02)
            task = asyncio.create_task(fwd.run())
            for _ in range(500):
                if store.states() == {"delivered": 2}:
                    break
                await asyncio.sleep(0.02)
            await fwd.stop()
            await task
            return store

        store = asyncio.run(send())
        assert store.states() == {"delivered": 2}
        lines = [json.loads(proc.stdout.readline()) for _ in range(2)]
        assert [r["body"]["event"] for r in lines] == ["panic", "tamper"]
        assert all(r["verdict"] == "accepted" for r in lines)
        assert all("Authorization" not in r["headers"] for r in lines)  # token not echoed
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        assert len(rec.read_text().splitlines()) == 2
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_cli_bad_arguments_and_busy_port(tmp_path: Path) -> None:
    r = subprocess.run([*PANICGW, "dispatch-server", "--tls-cert", str(tmp_path / "c.pem")],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2 and "--tls-key" in r.stderr
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        r = subprocess.run([*PANICGW, "dispatch-server", "--port", str(port)],
                           capture_output=True, text=True, timeout=30)
    assert r.returncode == 3 and "another --port" in r.stderr
