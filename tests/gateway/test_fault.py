"""Fault test: the real daemon (`panicgw run` subprocess) is killed with SIGKILL at random
moments during bursts of alarms from several buttons, 20+ times, then restarted on the same
data directory. The buttons behave like the firmware: an alarm without a verified ACK is
retried with the same counter until it is acknowledged.

Asserted: every alarm a button saw acknowledged is in the store with its incident, its outbox
row reaches the local dispatch server (panicgw.dispatch_server, schema-checking), and
dispatch never sees two different incident ids for one press (nor for one button's presses
within the grouping window)."""

from __future__ import annotations

import http.client
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
from gwharness import DispatchThread
from gwkit import make_record, uplink

from panicgw.store import Store
from panicproto import frames

TRIALS = 22
DEVICES = [(0x00A10000 + i, bytes([i + 1]) * 16) for i in range(6)]
PRESSES_PER_TRIAL = 2  # new presses per button per trial


def _write_config(tmp: Path, dispatch_url: str) -> Path:
    cfg = tmp / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-fault"
data_dir = "{tmp / 'data'}"
log_format = "text"
log_level = "warning"
[pipeline]
incident_window_s = 300
[http]
host = "127.0.0.1"
port = 0
rate_per_s = 100000.0
rate_burst = 100000
[serial]
enabled = false
[status]
enabled = false
[dispatch]
url = "{dispatch_url}"
allow_insecure_http = true
timeout_s = 2.0
""")
    return cfg


class Daemon:
    def __init__(self, cfg: Path, data: Path, log: Path) -> None:
        self.data = data
        (data / "runtime.json").unlink(missing_ok=True)
        exe = Path(sys.executable).parent / "panicgw"
        cmd = [str(exe)] if exe.exists() else [
            sys.executable, "-c", "from panicgw.cli import app; app()"]
        self.proc = subprocess.Popen(
            cmd + ["run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL, stderr=open(log, "ab"), stdin=subprocess.DEVNULL)
        self.port: int | None = None

    def wait_ready(self, timeout: float = 20.0) -> int:
        end = time.monotonic() + timeout
        rt = self.data / "runtime.json"
        while time.monotonic() < end:
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited early with {self.proc.returncode}")
            try:
                info = json.loads(rt.read_text())
                if info.get("pid") == self.proc.pid and info.get("http_port"):
                    self.port = int(info["http_port"])
                    return self.port
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise AssertionError("gateway did not become ready")


def _post(port: int, body: bytes) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        c.request("POST", "/v1/frames", body=body,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def _press_all(port: int, pending: dict, acked: set, attempts: dict) -> None:
    """Each button thread sends its pending alarms in order until the gateway dies."""
    def button(dev_id: int, key: bytes) -> None:
        for counter in sorted(c for (d, c) in list(pending) if d == dev_id):
            a = attempts.get((dev_id, counter), 0)
            attempts[(dev_id, counter)] = a + 1
            body = uplink(kind=frames.ALARM, counter=counter, device_id=dev_id, key=key,
                          attempt=min(a, 15), wifi=True)
            try:
                status, resp = _post(port, body)
            except (OSError, http.client.HTTPException):
                return  # gateway gone: retry after restart
            if status == 200:
                d = frames.decode_downlink(resp, key)  # raises if forged or wrong key
                assert d.kind == frames.ACK and d.counter == counter and d.device_id == dev_id
                acked.add((dev_id, counter))
                pending.pop((dev_id, counter), None)

    threads = [threading.Thread(target=button, args=dk) for dk in DEVICES]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)


@pytest.mark.timeout(240)
def test_sigkill_during_alarm_bursts_loses_and_doubles_nothing(tmp_path):
    rng = random.Random(int(os.environ.get("FAULT_SEED", "4242")))
    disp = DispatchThread()
    try:
        cfg = _write_config(tmp_path, disp.srv.url)
        data = tmp_path / "data"
        s = Store(data / "gateway.db")
        for dev_id, key in DEVICES:
            s.upsert_device(make_record(dev_id, key))
        s.close()
        log = tmp_path / "gateway.log"
        pending: dict = {}
        acked: set = set()
        attempts: dict = {}
        next_seq = {dev_id: 1 for dev_id, _ in DEVICES}
        kills = 0
        interrupted = 0  # trials whose kill left alarms unacknowledged
        for _ in range(TRIALS):
            for dev_id, _ in DEVICES:
                for _ in range(PRESSES_PER_TRIAL):
                    pending[(dev_id, frames.make_counter(1, next_seq[dev_id]))] = True
                    next_seq[dev_id] += 1
            d = Daemon(cfg, data, log)
            port = d.wait_ready()
            killer = threading.Timer(rng.uniform(0.0, 0.12), d.proc.send_signal,
                                     (signal.SIGKILL,))
            killer.start()
            _press_all(port, pending, acked, attempts)
            killer.join()
            d.proc.wait(10)
            assert d.proc.returncode == -signal.SIGKILL
            kills += 1
            interrupted += bool(pending)
        assert kills >= 20
        print(f"kills={kills} interrupted={interrupted} acked={len(acked)} "
              f"pending={len(pending)}")
        assert interrupted >= 5, "kills never landed during a burst: the test proves nothing"
        assert len(acked) >= 20, "too few alarms acknowledged between kills"
        # Final run: buttons retry whatever was never acknowledged; dispatch drains.
        d = Daemon(cfg, data, log)
        port = d.wait_ready()
        for _ in range(20):
            if not pending:
                break
            _press_all(port, pending, acked, attempts)
        assert not pending, f"alarms never acknowledged: {sorted(pending)[:5]}"
        db = sqlite3.connect(data / "gateway.db")
        end = time.monotonic() + 60
        while time.monotonic() < end:
            left = db.execute("SELECT count(*) FROM outbox WHERE state = 'pending' "
                              "AND priority = 0").fetchone()[0]
            if left == 0:
                break
            time.sleep(0.1)
        d.proc.send_signal(signal.SIGTERM)
        assert d.proc.wait(20) == 0
        assert left == 0, f"{left} alarms still waiting for dispatch"

        # Every acknowledged press is stored once, with an incident, delivered.
        events = {(dev, ctr): (inc, eid) for dev, ctr, inc, eid in db.execute(
            "SELECT device_id, counter, incident_id, id FROM events WHERE kind = 'alarm'")}
        for press in acked:
            assert press in events, f"acknowledged alarm {press} not stored"
        states = dict(db.execute("SELECT event_id, state FROM outbox WHERE event_id IS NOT NULL"))
        assert all(states[events[p][1]] == "delivered" for p in acked)
        rows = db.execute("SELECT count(*), count(DISTINCT event_id) FROM outbox "
                          "WHERE event_id IS NOT NULL").fetchone()
        assert rows[0] == rows[1], "an event has two outbox rows"
        db.close()

        bodies = [b for b in disp.bodies() if b and b.get("event") == "panic"]
        by_key: dict[str, set] = {}
        for b in bodies:
            by_key.setdefault(b["idempotency_key"], set()).add(b["incident_id"])
        assert all(len(v) == 1 for v in by_key.values()), "one key, two incident ids"
        got_incidents = {b["incident_id"] for b in bodies}
        for press in acked:
            assert events[press][0] in got_incidents, f"{press} never reached dispatch"
        # All presses of one button fall in one grouping window: one incident per button.
        per_device: dict[str, set] = {}
        for b in bodies:
            per_device.setdefault(b["device"]["id"], set()).add(b["incident_id"])
        assert all(len(v) == 1 for v in per_device.values()), per_device
        # press counts received cover 1..n for each button (each press forwarded)
        for dev_id, _ in DEVICES:
            counts = {b["press_count"] for b in bodies if b["device"]["id"] == f"{dev_id:08X}"}
            n_acked = sum(1 for (d_, _) in acked if d_ == dev_id)
            assert counts == set(range(1, max(counts) + 1)) and max(counts) >= n_acked
    finally:
        disp.close()
