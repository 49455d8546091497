"""Fault test on a REAL full filesystem: the `panicgw run` daemon keeps its data directory on a
small tmpfs, a filler file takes every free byte (ENOSPC), and Wi-Fi buttons keep sending
distinct signed alarms.

Asserted: the daemon never dies and keeps answering ``GET /v1/health``; every alarm is either
acknowledged with a verifying ACK STORED (and is then in the DB) or refused with 503 and no
ACK (and is then NOT in the DB); at least one refusal happens; each refusal is counted as
``internal_error`` in the status API and persisted once the disk has room again; the WAL
checkpointer hits SQLITE_FULL, logs it and keeps running (it checkpoints everything into the
main DB file after the filler is gone); after the filler is deleted the buttons' retries of
the refused alarms are acknowledged, and dispatch accepts every acknowledged alarm exactly once
per incident id."""

from __future__ import annotations

import errno
import http.client
import json
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gwharness import DispatchThread
from gwkit import make_record, uplink, wait_until

from panicgw.store import Store
from panicproto import frames
from panicproto.errors import ProtocolError

DEVICES = [(0x00D15C00 + i, bytes([0x40 + i]) * 16) for i in range(4)]
KEYS = dict(DEVICES)
# 4 buttons x 50 presses stay inside the 64-counter replay window, so a refused press retried
# after the last one is still NEW to the gateway (not a RESYNC).
MAX_FRAMES = 200
WANT_REFUSALS = 3  # a few in a row: a full disk is a state, not a one-off
FS_MB = 16


# -- a real tmpfs ----------------------------------------------------------------------------


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Callable[[int, str], Path]]:
    """``tmpfs(size_mb, name)`` mounts a fresh tmpfs at ``tmp_path/name``: ENOSPC from the
    kernel instead of a faked threshold. Unmounted at teardown, whatever the outcome. Needs
    root: skipped without it, except in CI (CI=true), where a missing tool is a failure."""
    mounted: list[Path] = []

    def mount(size_mb: int, name: str = "tmpfs") -> Path:
        where = tmp_path / name
        where.mkdir()
        try:
            r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_mb}m,mode=0700",
                                "tmpfs", str(where)], capture_output=True, text=True,
                               timeout=30)
            why = " ".join(r.stderr.split()) or f"exit code {r.returncode}"
            ok = r.returncode == 0
        except OSError as e:  # no mount(8)
            why, ok = str(e), False
        if not ok:
            msg = f"cannot mount a {size_mb} MB tmpfs at {where}: {why} (needs root)"
            if os.environ.get("CI") == "true":
                pytest.fail(msg)
            pytest.skip(msg)
        mounted.append(where)
        total = shutil.disk_usage(where).total
        assert abs(total - size_mb * 2**20) < 2**20, f"{where} is not a {size_mb} MB fs"
        return where

    yield mount
    errors = []
    for where in reversed(mounted):
        r = subprocess.run(["umount", str(where)], capture_output=True, text=True, timeout=30)
        if r.returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, timeout=30)
            errors.append(f"umount {where}: {r.stderr.strip()} (lazily unmounted)")
    if errors:
        pytest.fail("; ".join(errors))


def fill(path: Path) -> int:
    """Write zeros to ``path`` until the filesystem answers ENOSPC; bytes written."""
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    total, chunk = 0, 1 << 20
    try:
        while True:
            try:
                total += os.write(fd, bytes(chunk))
            except OSError as e:
                if e.errno != errno.ENOSPC:
                    raise
                if chunk == 512:
                    break
                chunk = max(512, chunk // 16)
    finally:
        os.close(fd)
    return total


# -- the daemon and its clients -----------------------------------------------------------------


def _write_config(tmp: Path, data: Path, dispatch_url: str) -> Path:
    cfg = tmp / "gateway.toml"  # outside the tmpfs: the config is not what this test fills
    cfg.write_text(f"""
[gateway]
id = "gw-diskfull"
data_dir = "{data}"
log_format = "text"
log_level = "info"
[pipeline]
incident_window_s = 0
[http]
host = "127.0.0.1"
port = 0
rate_per_s = 100000.0
rate_burst = 100000
[serial]
enabled = false
[status]
host = "127.0.0.1"
port = 0
[dispatch]
url = "{dispatch_url}"
allow_insecure_http = true
timeout_s = 2.0
""")
    return cfg


class Daemon:
    """`panicgw run` as a real subprocess (a crash is an exit code, not a test-process
    crash); its stderr log goes to a file outside the tmpfs."""

    def __init__(self, cfg: Path, data: Path, log: Path) -> None:
        self.data = data
        self.log = log
        exe = Path(sys.executable).parent / "panicgw"
        cmd = [str(exe)] if exe.exists() else [
            sys.executable, "-c", "from panicgw.cli import app; app()"]
        with open(log, "ab") as err:
            self.proc = subprocess.Popen(cmd + ["run", "--config", str(cfg)],
                                         stdout=subprocess.DEVNULL, stderr=err,
                                         stdin=subprocess.DEVNULL)
        self.port = self.status_port = 0

    def wait_ready(self, timeout: float = 20.0) -> None:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            assert self.proc.poll() is None, f"gateway exited with {self.proc.returncode}"
            try:
                info = json.loads((self.data / "runtime.json").read_text())
                if info.get("pid") == self.proc.pid and info.get("http_port") \
                        and info.get("status_port"):
                    self.port, self.status_port = int(info["http_port"]), int(
                        info["status_port"])
                    return
            except (OSError, ValueError):
                pass
            time.sleep(0.02)
        raise AssertionError("gateway did not become ready")

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                return self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        return self.proc.wait(10)


def _request(port: int, method: str, path: str,
             body: bytes | None = None) -> tuple[int, bytes, dict[str, str]]:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        headers = {"Content-Type": "application/octet-stream"} if body is not None else {}
        c.request(method, path, body=body, headers=headers)
        r = c.getresponse()
        return r.status, r.read(), dict(r.getheaders())
    finally:
        c.close()


def _alive(d: Daemon) -> None:
    """(a): the process runs and its health endpoint answers."""
    assert d.proc.poll() is None, f"gateway died with exit code {d.proc.returncode}"
    status, body, _ = _request(d.port, "GET", "/v1/health")
    assert status == 200 and json.loads(body)["status"] == "ok", (status, body)


def _status(d: Daemon) -> dict[str, Any]:
    status, body, _ = _request(d.status_port, "GET", "/v1/status")
    assert status == 200, body
    return json.loads(body)


Press = tuple[int, int]  # (device id, counter)


def _press(d: Daemon, press: Press, attempt: int = 0) -> tuple[bool, int, bytes]:
    """One alarm as the button firmware sends it; (acknowledged, HTTP status, body). An
    acknowledgement must verify with the device key and name this very frame."""
    dev, ctr = press
    frame = uplink(kind=frames.ALARM, counter=ctr, device_id=dev, key=KEYS[dev],
                   attempt=attempt, wifi=True)
    status, body, headers = _request(d.port, "POST", "/v1/frames", frame)
    if status != 200:
        assert status == 503 and b"retry" in body and headers.get("Retry-After"), (
            status, body, headers)
        with pytest.raises(ProtocolError):  # nothing a button could take for an ACK
            frames.decode_downlink(body, KEYS[dev])
        return False, status, body
    down = frames.decode_downlink(body, KEYS[dev])  # raises if forged or for another key
    assert (down.kind, down.device_id, down.counter, down.status) == (
        frames.ACK, dev, ctr, frames.STORED), down
    return True, status, body


def _stored(db: Path) -> dict[Press, str]:
    """(device, counter) -> incident id of every stored alarm (a WAL reader: the latest)."""
    con = sqlite3.connect(db, timeout=10)
    try:
        return {(int(dv), int(ct)): inc for dv, ct, inc in con.execute(
            "SELECT device_id, counter, incident_id FROM events WHERE kind = 'alarm'")}
    finally:
        con.close()


def _checkpointed(db: Path, scratch: Path) -> dict[Press, str] | None:
    """The alarms in the main DB file alone (no WAL): what the checkpointer has copied."""
    for suffix in ("", "-wal", "-shm"):
        Path(f"{scratch}{suffix}").unlink(missing_ok=True)
    shutil.copyfile(db, scratch)
    try:
        return _stored(scratch)
    except sqlite3.DatabaseError:  # copied while a checkpoint was writing it: look again
        return None


# -- the test --------------------------------------------------------------------------------


@pytest.mark.timeout(120)
def test_full_disk_refuses_without_ack_and_recovers(tmpfs, tmp_path):
    fs = tmpfs(FS_MB, "fs")
    data = fs / "data"
    db = data / "gateway.db"
    s = Store(db)
    for dev, key in DEVICES:
        s.upsert_device(make_record(dev, key))
    s.close()
    disp = DispatchThread()
    d: Daemon | None = None
    try:
        d = Daemon(_write_config(tmp_path, data, disp.srv.url), data, tmp_path / "gw.log")
        d.wait_ready()
        seq = {dev: 0 for dev, _ in DEVICES}

        def next_press(i: int) -> Press:
            dev = DEVICES[i % len(DEVICES)][0]
            seq[dev] += 1
            return dev, frames.make_counter(1, seq[dev])

        acked: list[Press] = []
        refused: list[Press] = []
        for i in range(4):  # room on disk: every alarm acknowledged
            p = next_press(i)
            assert _press(d, p)[0], p
            acked.append(p)

        # Let the checkpointer copy them into the main DB: the WAL then restarts from its
        # start, so the first alarms on the full disk fit in WAL space already allocated.
        scratch = tmp_path / "main-only.db"
        assert wait_until(lambda: (_checkpointed(db, scratch) or {}).keys() >= set(acked),
                          15), "no WAL checkpoint with room on disk"
        filler = fs / "filler"
        filled = fill(filler)
        assert shutil.disk_usage(fs).free < 4096, "the filesystem still has room"
        full_at = len(acked)

        sent = 0
        while len(refused) < WANT_REFUSALS and sent < MAX_FRAMES:
            p = next_press(len(acked) + len(refused))
            ok, _, _ = _press(d, p)
            sent += 1
            (acked if ok else refused).append(p)
            _alive(d)
        assert refused, (
            f"{sent} alarms all acknowledged on a full disk ({filled} bytes of filler): the "
            "WAL never needed to grow, so this run proves nothing about refusals")
        print(f"full disk: {len(acked) - full_at} acked from WAL room, then "
              f"{len(refused)} refused with 503 after {sent} frames")

        # Each refusal is counted with its reason in the status API; the log says why.
        st = _status(d)
        assert st["rejections"].get("internal_error") == len(refused), st["rejections"]
        assert st["frames"]["rejected"] == len(refused), st["frames"]
        assert st["frames"]["stored"] >= len(acked)
        assert "store transaction failed" in d.log_text()
        assert "database or disk is full" in d.log_text()

        # The checkpointer meets SQLITE_FULL (it runs every second) and lives on.
        assert wait_until(lambda: "WAL checkpoint failed" in d.log_text(), 15), (
            "the WAL checkpointer never ran into the full disk")
        ck = d.log_text().split("WAL checkpoint failed", 1)[1]  # up to the next record:
        ck = re.split(r"\n\d{4}-\d\d-\d\d ", ck, maxsplit=1)[0]
        assert "database or disk is full" in ck, ck
        _alive(d)

        # Nothing refused was stored; everything acknowledged was.
        stored = _stored(db)
        assert not set(refused) & set(stored), "a refused alarm was stored"
        assert set(acked) <= set(stored), "an acknowledged alarm is not in the DB"

        # Room again: the buttons' retries of the refused alarms are acknowledged.
        filler.unlink()
        for p in refused:
            assert _press(d, p, attempt=1)[0], f"retry of {p} refused after the disk freed"
            acked.append(p)
        _alive(d)
        stored = _stored(db)
        assert set(stored) == set(acked)
        assert all(stored[p] for p in acked), "an alarm without an incident"
        # The refusals were persisted with the next commit, not lost with the full disk.
        assert _status(d)["rejections_total"].get("internal_error") == len(refused)

        # Checkpointer alive: the main DB file alone ends up holding every alarm.
        assert wait_until(lambda: (_checkpointed(db, scratch) or {}).keys() >= set(acked),
                          15), "WAL checkpoints stopped after SQLITE_FULL"
        # Logged at a bounded rate: one traceback for the whole outage (it failed every
        # second), then one line when it recovered.
        assert wait_until(lambda: "WAL checkpoint recovered" in d.log_text(), 15)
        assert d.log_text().count("WAL checkpoint failed") == 1

        # Dispatch: every acknowledged alarm's incident accepted exactly once.
        want = {stored[p] for p in acked}
        assert len(want) == len(acked)  # incident_window_s = 0: one incident per press

        async def received() -> list[tuple[int, str, str | None, dict[str, Any] | None]]:
            return [(r.status, r.verdict, r.idempotency_key, r.body)
                    for r in disp.srv.received]

        def panics() -> list[tuple[int, str, str | None, dict[str, Any]]]:
            return [(s_, v, k, b) for s_, v, k, b in disp.call(received())
                    if b and b.get("event") == "panic"]

        assert wait_until(lambda: {b["incident_id"] for _, v, _, b in panics()
                                   if v == "accepted"} >= want, 30), "alarms never dispatched"
        got = panics()
        accepted = Counter(b["incident_id"] for _, v, _, b in got if v == "accepted")
        assert set(accepted) == want and set(accepted.values()) == {1}, accepted
        keys: dict[str, set[str | None]] = {}
        for _, _, k, b in got:
            keys.setdefault(b["incident_id"], set()).add(k)
        assert all(len(v) == 1 for v in keys.values()), "one incident, two idempotency keys"
        assert wait_until(lambda: _status(d)["outbox"]["pending_alarms"] == 0, 15)

        log = d.log_text()
        for crash in ("Task exception was never retrieved", "Exception in thread"):
            assert crash not in log, crash
        rc = d.stop()
        assert rc == 0, f"gateway exit code {rc}"
    finally:
        if d is not None:
            d.stop()
        disp.close()
