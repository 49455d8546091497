"""The daemon as systemd runs it: READY/WATCHDOG/STOPPING over $NOTIFY_SOCKET, the status API
on localhost, and SIGTERM draining (exit 0, frames acknowledged before stopping)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from gwkit import make_record, uplink

from panicgw.store import Store
from panicproto import frames

PANICGW = str(Path(sys.executable).parent / "panicgw")


def test_systemd_notify_status_api_and_sigterm(tmp_path):
    sock_path = tmp_path / "notify.sock"
    srv = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    srv.bind(str(sock_path))
    srv.settimeout(15)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f"""
[gateway]
data_dir = "{tmp_path / 'data'}"
[http]
host = "127.0.0.1"
port = 0
[serial]
enabled = false
[status]
port = 0
""")
    s = Store(tmp_path / "data" / "gateway.db")
    s.upsert_device(make_record())
    s.close()
    env = {"NOTIFY_SOCKET": str(sock_path), "WATCHDOG_USEC": "400000", "PATH": "/usr/bin:/bin"}
    proc = subprocess.Popen([PANICGW, "run", "--config", str(cfg)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        msgs: list[str] = []
        while not any("READY=1" in m for m in msgs):
            msgs.append(srv.recv(4096).decode())
        while not any(m == "WATCHDOG=1" for m in msgs):
            msgs.append(srv.recv(4096).decode())
        info = json.loads((tmp_path / "data" / "runtime.json").read_text())
        body = uplink(counter=0x00070001)
        req = urllib.request.Request(f"http://127.0.0.1:{info['http_port']}/v1/frames",
                                     data=body, headers={"Content-Type":
                                                         "application/octet-stream"})
        with urllib.request.urlopen(req, timeout=5) as r:
            assert frames.decode_downlink(r.read(), bytes(range(16))).kind == frames.ACK
        with urllib.request.urlopen(f"http://127.0.0.1:{info['status_port']}/v1/status",
                                    timeout=5) as r:
            st = json.loads(r.read())
        assert st["frames"]["stored"] == 1 and st["devices"] == 1
        assert st["bridge"] == {"state": "disabled"} and "ingest_queue" in st
        assert "rejections" in st and "outbox" in st
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(20) == 0
        while not any("STOPPING=1" in m for m in msgs):
            msgs.append(srv.recv(4096).decode())
        logs = [json.loads(line) for line in proc.stderr.read().decode().splitlines()
                if line.startswith("{")]
        assert any(rec["msg"] == "stopped" for rec in logs)  # structured (JSON) logs
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        srv.close()


def test_store_failure_exit_code_3(tmp_path):
    data = tmp_path / "data"
    data.mkdir()
    (data / "gateway.db").write_bytes(b"this is not a database" * 100)
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[gateway]\ndata_dir = "{data}"\n[serial]\nenabled = false\n'
                   '[http]\nport = 0\n[status]\nport = 0\n')
    t0 = time.monotonic()
    r = subprocess.run([PANICGW, "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 3 and "cannot open gateway DB" in r.stderr
    assert time.monotonic() - t0 < 30
