"""A gateway whose dispatch token is wrong: the running daemon keeps the alarm pending (never a
dead letter), its status API says auth_failed, and `panicgw diag` reads that: FAIL with the
probe's 401 while the config is wrong, and FAIL "restart" once the config is fixed but the
daemon still runs with the old token. After the restart the alarm reaches dispatch."""

from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request

from diagkit import DEV, KEY, TOKEN, Gateway, by_id
from test_diag_running import running_daemon

from panicproto import frames


def _status(gw: Gateway) -> dict:
    info = json.loads((gw.data / "runtime.json").read_text())
    with urllib.request.urlopen(f"http://127.0.0.1:{info['status_port']}/v1/status",
                                timeout=5) as r:
        return json.loads(r.read())


def _diag(gw: Gateway) -> dict:
    res = subprocess.run([sys.executable, "-c", "from panicgw.cli import app; app()", "diag",
                          "-c", str(gw.config), "--json", "--only", "dispatch"],
                         capture_output=True, text=True, timeout=60)
    return by_id(json.loads(res.stdout))


def _until(pred, timeout: float = 20.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(0.1)
    return pred()


def test_wrong_token_keeps_alarm_pending_and_diag_reads_the_daemon(gw: Gateway) -> None:
    gw.overrides["dispatch"] = {"token": "an-old-revoked-token"}
    with running_daemon(gw):
        alarm = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, DEV, 0x00040001))
        gw.bridge.rx(alarm, -100, 7.0)
        assert _until(lambda: _status(gw)["dispatch"]["auth_failures"] >= 2)
        st = _status(gw)
        assert st["dispatch"]["auth_failed"] is True and st["dispatch"]["dead_lettered"] == 0
        assert st["outbox"]["dead"] == 0 and st["outbox"]["pending_alarms"] == 1
        assert st["dead_letters"] == []

        auth = _diag(gw)["dispatch.auth"]  # config still wrong: the probe and the daemon
        assert auth["status"] == "FAIL" and "HTTP 401" in auth["finding"]
        assert "running daemon" in auth["finding"] and auth["data"]["daemon_auth_failed"]

        gw.overrides["dispatch"] = {"token": TOKEN}  # the technician fixes the config ...
        gw.write_config()
        auth = _diag(gw)["dispatch.auth"]  # ... but has not restarted yet
        assert auth["status"] == "FAIL" and "restart panicgw" in auth["hint"]
        assert "although this config's credentials are accepted" in auth["finding"]

    assert gw.dispatch is not None
    assert gw.dispatch.accepted() == []
    with running_daemon(gw):  # restarted with the fixed token
        assert _until(lambda: _status(gw)["outbox"]["pending_alarms"] == 0)
        st = _status(gw)
        assert st["dispatch"]["auth_failed"] is False and st["outbox"]["dead"] == 0
        assert _diag(gw)["dispatch.auth"]["status"] == "PASS"
    events = [r.body["event"] for r in gw.dispatch.accepted()]
    assert "panic" in events
