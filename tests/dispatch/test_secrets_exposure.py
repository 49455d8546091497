"""Issue 11.7, gateway side: the dispatch URL's credentials (``user:password@``) are used but
never leave the process (status API, MQTT, diag, logs, `run --check`, `outbox list`), and a
plain http:// dispatch URL is refused unless ``[dispatch] allow_insecure_http = true``, which
diag warns about. A real `panicgw run`, the recording dispatch server, a private Mosquitto."""

from __future__ import annotations

import base64
import json
import os
import queue
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest

from panicgw import config
from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import Store
from panicproto import frames

from .conftest import LiveDispatch, free_port
from .test_mqtt import broker  # noqa: F401  (fixture)

PANICGW = str(Path(sys.executable).parent / "panicgw")
USER, PASSWORD = "gw-bandung", "S3cret-Pass-4711"
KEY = bytes(range(16))
DEV = 0x0000BEEF


def _until(pred: Any, timeout: float = 30.0) -> Any:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        got = pred()
        if got:
            return got
        time.sleep(0.02)
    raise AssertionError("timed out")


@pytest.mark.parametrize("extra", ["", "allow_insecure_http = false\n"])
def test_plain_http_dispatch_url_is_refused_at_config_load(tmp_path, extra):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[dispatch]\nurl = "http://{USER}:{PASSWORD}@dispatch.example/v1/events"\n'
                   + extra)
    with pytest.raises(config.ConfigError) as e:
        config.load(cfg)
    msg = str(e.value)
    assert "[dispatch] url" in msg and "allow_insecure_http = true" in msg and "https" in msg
    assert PASSWORD not in msg and USER not in msg
    r = subprocess.run([PANICGW, "run", "--config", str(cfg)], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 2 and "allow_insecure_http" in r.stderr
    assert PASSWORD not in r.stderr + r.stdout


def test_url_credentials_and_a_token_together_are_refused(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[dispatch]\nurl = "https://{USER}:{PASSWORD}@d.example/v1/events"\n'
                   'token = "tok-123456"\n')
    with pytest.raises(config.ConfigError, match="one of them") as e:
        config.load(cfg)
    assert PASSWORD not in str(e.value)


def test_https_and_explicitly_allowed_http_load(tmp_path):
    cfg = tmp_path / "gw.toml"
    cfg.write_text('[dispatch]\nurl = "https://d.example/v1/events"\n')
    assert config.load(cfg).dispatch["allow_insecure_http"] is False
    cfg.write_text('[dispatch]\nurl = "http://127.0.0.1:8099/v1/events"\n'
                   "allow_insecure_http = true\n")
    assert config.load(cfg).dispatch["url"].startswith("http://")


def _mqtt_status(port: int, gateway_id: str) -> str:
    got: queue.Queue[str] = queue.Queue()
    c = paho.Client(paho.CallbackAPIVersion.VERSION2)
    c.on_message = lambda cl, ud, msg: got.put(msg.payload.decode())
    c.connect("127.0.0.1", port)
    c.subscribe(f"panic/{gateway_id}/status", qos=1)
    c.loop_start()
    try:
        end = time.monotonic() + 30
        while time.monotonic() < end:
            try:
                text = got.get(timeout=1)
            except queue.Empty:
                continue
            if '"dispatch"' in text:  # the full status, not only online/offline
                return text
        raise AssertionError("no MQTT status with dispatch stats")
    finally:
        c.loop_stop()
        c.disconnect()


def test_dispatch_url_credentials_never_leave_the_process(tmp_path, broker):  # noqa: F811
    disp = LiveDispatch()
    data = tmp_path / "data"
    s = Store(data / "gateway.db")  # the DB as the daemon makes it, with one button
    s.upsert_device(DeviceRecord(DEV, KEY, SiteRecord("Toko", "shop", "Jl. 1", -6.9, 107.6),
                                 paths=["wifi"]))
    s.close()
    host_port = disp.srv.url.split("//", 1)[1]
    url = f"http://{USER}:{PASSWORD}@{host_port}"
    http_port = free_port()
    cfg = tmp_path / "gateway.toml"
    cfg.write_text(f"""
[gateway]
id = "gw-sec"
data_dir = "{data}"
log_format = "text"
log_level = "debug"
[http]
host = "127.0.0.1"
port = {http_port}
[serial]
enabled = false
[status]
port = 0
[dispatch]
url = "{url}"
allow_insecure_http = true
timeout_s = 2.0
[mqtt]
enabled = true
port = {broker.port}
""")
    cfg.chmod(0o600)
    log_path = tmp_path / "gw.log"
    log = log_path.open("wb")
    proc = subprocess.Popen([PANICGW, "run", "--config", str(cfg)], stdout=log,
                            stderr=subprocess.STDOUT, start_new_session=True)
    leaks: dict[str, str] = {}
    try:
        runtime = _until(lambda: (data / "runtime.json").exists()
                         and json.loads((data / "runtime.json").read_text()))

        def post(counter: int) -> None:
            body = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, DEV, counter,
                                                           wifi=True))
            req = urllib.request.Request(f"http://127.0.0.1:{http_port}/v1/frames", data=body,
                                         headers={"Content-Type": "application/octet-stream"})
            with urllib.request.urlopen(req, timeout=5) as r:
                assert r.status == 200

        post(0x00010001)
        panic = _until(lambda: [r for r in disp.received() if isinstance(r.body, dict)
                                and r.body.get("event") == "panic"])
        # the credentials are used: dispatch got them as HTTP basic auth
        want = base64.b64encode(f"{USER}:{PASSWORD}".encode()).decode()
        assert panic[0].headers["Authorization"] == f"Basic {want}"
        # dispatch fails: errors are logged, stored and counted
        disp.run(disp.srv.fail, 500)
        post(0x00010002)
        _until(lambda: sum(r.status == 500 for r in disp.received()) >= 2)

        with urllib.request.urlopen(f"http://127.0.0.1:{runtime['status_port']}/v1/status",
                                    timeout=5) as r:
            status = r.read().decode()
        leaks["status API"] = status
        shown = json.loads(status)["dispatch"]["url"]
        assert shown == f"http://***@{host_port}"
        leaks["MQTT status"] = _mqtt_status(broker.port, "gw-sec")
        assert shown in leaks["MQTT status"]
        r = subprocess.run([PANICGW, "diag", "-c", str(cfg), "--json"], capture_output=True,
                           text=True, timeout=120)
        leaks["diag --json"] = r.stdout + r.stderr
        results = {x["id"]: x for x in json.loads(r.stdout)["results"]}
        assert results["dispatch.insecure"]["status"] == "WARN"
        assert "allow_insecure_http" in results["dispatch.insecure"]["hint"]
        r = subprocess.run([PANICGW, "diag", "-c", str(cfg)], capture_output=True, text=True,
                           timeout=120, env={**os.environ, "COLUMNS": "200"})
        leaks["diag"] = r.stdout + r.stderr
        r = subprocess.run([PANICGW, "outbox", "list", "-c", str(cfg), "--json"],
                           capture_output=True, text=True, timeout=60)
        leaks["outbox list"] = r.stdout + r.stderr
        assert "http_500" in r.stdout  # the stored error is there, without the credentials
        r = subprocess.run([PANICGW, "run", "--config", str(cfg), "--check"],
                           capture_output=True, text=True, timeout=60)
        leaks["run --check"] = r.stdout + r.stderr
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        log.close()
        disp.close()
    leaks["daemon log"] = log_path.read_text()
    assert "dispatch" in leaks["daemon log"] and "http_500" in leaks["daemon log"]
    for where, text in leaks.items():
        assert PASSWORD not in text, where
        assert f"{USER}:" not in text and f"{USER}@" not in text, where
