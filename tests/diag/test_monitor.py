"""`panicgw monitor`: JSON lines of frames (with RSSI/SNR and verdict) and rejections, following
the DB with the daemon stopped and the status API with it running; clean exit on Ctrl-C."""

from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request

from diagkit import DEV, KEY, Gateway
from test_diag_running import running_daemon

from panicproto import frames

CLI = [sys.executable, "-c", "from panicgw.cli import app; app()"]


class Lines:
    """Read a subprocess's stdout lines with a deadline (no hanging test on a silent child)."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.proc = proc
        self.sel = selectors.DefaultSelector()
        assert proc.stdout is not None
        os.set_blocking(proc.stdout.fileno(), False)
        self.sel.register(proc.stdout, selectors.EVENT_READ)
        self.buf = b""

    def take(self, n: int, timeout: float = 15.0) -> list[dict]:
        out: list[dict] = []
        end = time.monotonic() + timeout
        while len(out) < n and time.monotonic() < end:
            while b"\n" in self.buf and len(out) < n:
                line, self.buf = self.buf.split(b"\n", 1)
                out.append(json.loads(line))
            if len(out) >= n:
                break
            if self.sel.select(0.1):
                chunk = self.proc.stdout.read(65536)  # type: ignore[union-attr]
                if not chunk:
                    break
                self.buf += chunk
        return out


def _stop(proc: subprocess.Popen[bytes]) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        rc = proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        raise
    return rc, proc.stderr.read().decode()  # type: ignore[union-attr]


def test_monitor_follows_db_and_exits_on_ctrl_c(gw: Gateway) -> None:
    cfg = gw.write_config()
    proc = subprocess.Popen([*CLI, "monitor", "-c", str(cfg), "--json", "--interval", "0.1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    lines = Lines(proc)
    try:
        start = lines.take(1)[0]  # it has its starting point
        assert start["type"] == "monitor" and start["frames_from"] == "db"
        now = time.time()
        with gw.store.transaction():
            eid = gw.store.insert_event(DEV, 0x20001, "alarm", "pb-00c0ffee-00020001", now, 0,
                                        0, 3700, b"\x00" * 19)
            gw.store.add_reception(eid, "lora", -112.0, -4.5, now, False)
            gw.store.add_reception(eid, "wifi", None, None, now + 0.1, True)
            gw.store.add_rejections({"bad_tag": 3}, now)
        got = lines.take(3)
    finally:
        rc, err = _stop(proc)
    assert rc == 0 and "Traceback" not in err, err
    frames_ = [g for g in got if g["type"] == "frame"]
    rej = [g for g in got if g["type"] == "rejected"]
    assert frames_[0]["rssi"] == -112.0
    assert frames_[0]["snr"] == -4.5 and frames_[0]["verdict"] == "stored"
    assert frames_[0]["kind"] == "alarm" and frames_[0]["site"] == "Toko Sinar"
    assert frames_[1]["path"] == "wifi" and frames_[1]["verdict"] == "duplicate"
    assert rej == [{"type": "rejected", "at": rej[0]["at"], "reason": "bad_tag", "count": 3,
                    "total": 3}]


def test_monitor_live_view_and_history(gw: Gateway) -> None:
    now = time.time()
    with gw.store.transaction():
        eid = gw.store.insert_event(DEV, 0x20002, "test", "pb-x", now, 0, 0, 3700, b"\0" * 19)
        gw.store.add_reception(eid, "lora", -99.0, 8.0, now, False)
    cfg = gw.write_config()
    res = subprocess.run([*CLI, "monitor", "-c", str(cfg), "--history", "5", "--count", "1"],
                         capture_output=True, text=True, timeout=30,
                         env=dict(os.environ, COLUMNS="160"))
    assert res.returncode == 0, res.stderr
    assert "-99 dBm / 8 dB" in res.stdout and "stored" in res.stdout
    res = subprocess.run([*CLI, "monitor", "-c", str(cfg), "--device", "nope"],
                         capture_output=True, text=True, timeout=30)
    assert res.returncode == 2 and "not a device id" in res.stderr


def test_monitor_with_running_daemon_shows_rssi_and_bad_tags(gw: Gateway) -> None:
    with running_daemon(gw):
        info = json.loads((gw.data / "runtime.json").read_text())
        proc = subprocess.Popen([*CLI, "monitor", "-c", str(gw.config), "--json",
                                 "--interval", "0.1"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = Lines(proc)
        try:
            start = lines.take(1)[0]
            assert start["type"] == "monitor" and start["rejections_from"] == "daemon"
            good = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, DEV, 0x00030001))
            gw.bridge.rx(good, -108, 6.25)
            forged = frames.encode_uplink(bytes(16), frames.Uplink(frames.ALARM, DEV,
                                                                   0x00030002, wifi=True))
            req = urllib.request.Request(
                f"http://127.0.0.1:{info['http_port']}/v1/frames", data=forged,
                headers={"Content-Type": "application/octet-stream"}, method="POST")
            try:
                urllib.request.urlopen(req, timeout=5)
            except urllib.error.HTTPError as e:
                assert e.code == 403
            got = lines.take(2)
        finally:
            rc, err = _stop(proc)
    assert rc == 0, err
    by_type = {g["type"]: g for g in got}
    f = by_type["frame"]
    assert (f["path"], f["rssi"], f["snr"], f["verdict"], f["kind"]) == (
        "lora", -108.0, 6.25, "stored", "alarm")
    assert by_type["rejected"]["reason"] == "bad_tag"


def _post_frame(port: int, body: bytes) -> int:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/frames", data=body,
                                 headers={"Content-Type": "application/octet-stream"},
                                 method="POST")
    try:
        with urllib.request.urlopen(req, timeout=5) as r:
            return r.status
    except urllib.error.HTTPError as e:
        return e.code


def test_monitor_device_filter_attributes_rejections_via_daemon(gw: Gateway) -> None:
    """Good frame, bad tag and replay of one button, each attributed to it with its reason;
    another device's rejection is filtered out; the same verdicts on GET /v1/frames."""
    with running_daemon(gw):
        info = json.loads((gw.data / "runtime.json").read_text())
        proc = subprocess.Popen([*CLI, "monitor", "-c", str(gw.config), "--json",
                                 "--interval", "0.1", "--device", f"{DEV:08X}"],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        lines = Lines(proc)
        try:
            start = lines.take(1)[0]
            assert start["type"] == "monitor" and start["frames_from"] == "daemon"
            good = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, DEV, 0x00030001))
            gw.bridge.rx(good, -108, 6.25)
            stranger = frames.encode_uplink(KEY, frames.Uplink(frames.ALARM, 0x0BADF00D, 5))
            assert _post_frame(info["http_port"], stranger) == 403
            forged = frames.encode_uplink(bytes(16), frames.Uplink(frames.ALARM, DEV,
                                                                   0x00030002, wifi=True))
            assert _post_frame(info["http_port"], forged) == 403
            stale = frames.encode_uplink(KEY, frames.Uplink(frames.TEST, DEV, 0x00010001,
                                                            wifi=True))
            assert _post_frame(info["http_port"], stale) == 200  # a signed RESYNC
            got = lines.take(3)
            more = lines.take(1, timeout=0.5)
            with urllib.request.urlopen(
                    f"http://127.0.0.1:{info['status_port']}/v1/frames", timeout=5) as r:
                api = json.loads(r.read())
        finally:
            rc, err = _stop(proc)
    assert rc == 0 and "Traceback" not in err, err
    assert more == []  # nothing of 0x0BADF00D
    summary = [(g["type"], g["device_id"], g["counter"], g["path"], g["verdict"],
                g.get("reason")) for g in got]
    assert summary == [
        ("frame", DEV, 0x00030001, "lora", "stored", None),
        ("rejected", DEV, 0x00030002, "wifi", "rejected", "bad_tag"),
        ("rejected", DEV, 0x00010001, "wifi", "rejected", "replay"),
    ]
    assert got[0]["rssi"] == -108.0 and got[0]["snr"] == 6.25
    assert got[1]["label"] == "kasir" and got[1]["site"] == "Toko Sinar"
    assert got[1]["device"] == "0x00C0FFEE" and got[1]["count"] == 1
    by_counter = {(f["device_id"], f["counter"]): f for f in api["frames"]}
    assert by_counter[(0x0BADF00D, 5)]["reason"] == "unknown_device"
    assert by_counter[(DEV, 0x00030002)]["reason"] == "bad_tag"
    assert by_counter[(DEV, 0x00010001)]["reason"] == "replay"
    assert by_counter[(DEV, 0x00030001)]["verdict"] == "stored"
