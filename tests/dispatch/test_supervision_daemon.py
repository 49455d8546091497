"""Issue 11.1 the way it happened: a button registered into a `panicgw run` that has been up
longer than the button's supervision limit must not be reported lost to dispatch at once.

The real `panicgw run` process runs on a virtual wall clock (tests/dispatch/vclock: time
runs SCALE times faster, the same function of real time in the daemon and in the
`panicgw devices import` that registers the button), so 985 s of uptime and a 420 s limit
take seconds, not minutes. Dispatch is the recording dispatch server over real HTTP.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from panicgw import registry
from panicgw.store import Store

PANICGW = str(Path(sys.executable).parent / "panicgw")
VCLOCK = Path(__file__).resolve().parent / "vclock"
SCALE = 200.0  # virtual seconds per real second
TICK_S = 0.05  # real seconds between supervision evaluations (10 virtual seconds)
INTERVAL = 60  # the issue's `--supervision 60`
LIMIT = 2 * INTERVAL + 300  # 2 intervals + the daemon's 300 s grace
DEV = 0x5E21A9C4


def _until(pred: Any, timeout: float, what: str) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def _epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


def test_a_button_registered_into_a_long_running_gateway_is_not_reported_lost(
        tmp_path, live_dispatch):
    disp = live_dispatch
    data = tmp_path / "data"
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-sup"
data_dir = "{data}"
log_format = "text"
[http]
host = "127.0.0.1"
port = 0
[serial]
enabled = false
[status]
port = 0
[dispatch]
url = "{disp.srv.url}"
allow_insecure_http = true
timeout_s = 300
checkin_interval_s = 604800
""")
    env = {**os.environ, "PYTHONPATH": str(VCLOCK),
           "PB_VCLOCK": f"{time.time()},{SCALE},{TICK_S}"}
    log = (tmp_path / "gw.log").open("wb")
    proc = subprocess.Popen([PANICGW, "run", "--config", str(cfg)], env=env, stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    try:
        runtime = _until(lambda: (data / "runtime.json").exists()
                         and json.loads((data / "runtime.json").read_text()), 30, "the daemon")

        def status() -> dict[str, Any]:
            url = f"http://127.0.0.1:{runtime['status_port']}/v1/status"
            with urllib.request.urlopen(url, timeout=5) as r:
                return json.loads(r.read())

        # The gateway has been up 985 s (its clock), longer than the button's limit.
        _until(lambda: status()["uptime_s"] > 985, 60, "985 s of (virtual) uptime")
        export = tmp_path / "provision-export.json"
        registry.write_export(export, [registry.DeviceRecord(
            DEV, bytes(range(16)), registry.SiteRecord("Toko Maju", "shop", "Jl. Braga 5",
                                                       -6.917, 107.609),
            label="kasir", paths=["lora"], supervision_s=INTERVAL)])
        r = subprocess.run([PANICGW, "devices", "import", str(export), "--config", str(cfg)],
                           env=env, capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, r.stdout + r.stderr
        store = Store(data / "gateway.db", readonly=True)
        enrolled = store.enrolled_at(DEV)
        store.close()
        assert enrolled is not None
        _until(lambda: status()["devices"] == 1, 30, "the registry reload")

        # The button stays silent: dispatch must hear about it only once it has been
        # silent 2 intervals + grace since its registration, then promptly.
        lost = _until(lambda: disp.events("supervision_lost"), 60, "supervision_lost")
        assert len(lost) == 1, lost
        raised_at = _epoch(lost[0]["times"]["first_heard"])
        assert raised_at - enrolled > LIMIT, (raised_at - enrolled, lost[0]["detail"])
        # ... and still raised (loose bound: one virtual second is 5 ms of real time here)
        assert raised_at - enrolled < 2 * LIMIT, "raised far too late: supervision stuck"
        silent = float(lost[0]["detail"].split("silent for ")[1].split(" s")[0])
        # The detail rounds to whole seconds: 420.3 s of silence reads "silent for 420 s".
        assert LIMIT <= silent < 2 * LIMIT, lost[0]["detail"]
        assert lost[0]["device"]["id"] == f"{DEV:08X}"
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
