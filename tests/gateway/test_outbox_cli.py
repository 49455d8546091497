"""`panicgw outbox list/requeue` against the real daemon and the recording dispatch server:
a TEST message dead-lettered by a 400 is listed, requeued (daemon running: woken at once;
daemon stopped: sent when it starts) and delivered; exit codes; diag's hint names it."""

from __future__ import annotations

import json
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
from gwharness import DispatchThread, GatewayThread, make_config
from gwkit import make_record, uplink, wait_until
from typer.testing import CliRunner

from panicgw.cli import app
from panicgw.store import Store
from panicproto import frames


def _cli(*args: str) -> SimpleNamespace:
    """`panicgw <args>` run in this process (the app the console script runs), its exit code,
    stdout and stderr as a finished process's: 15 interpreter start-ups saved."""
    r = CliRunner().invoke(app, list(args))
    assert r.exception is None or isinstance(r.exception, SystemExit), r.output
    return SimpleNamespace(returncode=r.exit_code, stdout=r.stdout, stderr=r.stderr)




@pytest.fixture
def disp():
    d = DispatchThread()
    yield d
    d.close()


def _setup(tmp_path: Path, disp: DispatchThread):
    cfg = make_config(tmp_path, dispatch={"url": disp.srv.url, "allow_insecure_http": True})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    toml = tmp_path / "gateway.toml"
    toml.write_text(f'[gateway]\nid = "gw-test"\ndata_dir = "{cfg.data_dir}"\n'
                    '[status]\nport = 0\n')
    return cfg, toml


def _post(gw: GatewayThread, body: bytes) -> int:
    import http.client

    c = http.client.HTTPConnection("127.0.0.1", gw.gw.http.port, timeout=5)
    c.request("POST", "/v1/frames", body=body,
              headers={"Content-Type": "application/octet-stream"})
    status = c.getresponse().status
    c.close()
    return status


def _tests(disp: DispatchThread) -> list[dict]:
    """TEST messages dispatch accepted (the gateway's own check-in is not ours)."""
    return [b for b in disp.bodies() if b["event"] == "test"]


def _dead_letter_one(gw: GatewayThread, disp: DispatchThread, counter: int,
                     dead: int = 1) -> None:
    # The start-up check-in goes first, so only our TEST meets the failure.
    assert wait_until(lambda: any(b["event"] == "gateway_checkin" for b in disp.bodies())
                 and gw.status()["outbox"]["pending"] == 0)
    disp.call(_fail(disp, 400))
    assert _post(gw, uplink(frames.TEST, counter, wifi=True)) == 200
    assert wait_until(lambda: gw.status()["outbox"]["dead"] == dead)
    disp.call(_heal(disp))


async def _fail(disp: DispatchThread, status: int) -> None:
    disp.srv.fail(status)


async def _heal(disp: DispatchThread) -> None:
    disp.srv.heal()


def test_dead_letter_requeued_with_daemon_running_is_delivered(tmp_path, disp):
    cfg, toml = _setup(tmp_path, disp)
    with GatewayThread(cfg) as gw:
        gw.gw.forwarder.poll_s = 60.0  # only the wake-up can make it look again in time
        _dead_letter_one(gw, disp, 0x00020001)
        assert _tests(disp) == []

        res = _cli("outbox", "list", "-c", str(toml), "--dead", "--json")
        assert res.returncode == 0, res.stderr
        rows = json.loads(res.stdout)
        assert len(rows) == 1
        row = rows[0]
        assert (row["state"], row["event"], row["priority_name"], row["attempts"]) == (
            "dead", "test", "event", 1)
        assert "HTTP 400" in row["last_error"] and row["age_s"] >= 0

        res = _cli("outbox", "requeue", "-c", str(toml), str(row["id"]), "999", "--json")
        assert res.returncode == 0, res.stderr
        doc = json.loads(res.stdout)
        assert doc == {"requeued": [row["id"]], "not_dead": [999], "daemon_woken": True}
        assert "999" in res.stderr
        assert wait_until(lambda: len(_tests(disp)) == 1, timeout=10.0)
        assert wait_until(lambda: gw.status()["outbox"]["pending"] == 0)
        st = gw.status()
        assert st["outbox"]["dead"] == 0 and st["dead_letters"] == []

        # Nothing dead any more: exit 1 for both, and the row's history is kept.
        assert _cli("outbox", "list", "-c", str(toml), "--dead").returncode == 1
        res = _cli("outbox", "requeue", "-c", str(toml), "--all-dead")
        assert res.returncode == 1 and "no dead letters" in res.stdout
    s = Store(cfg.db_path)
    try:
        (requeues, attempts, last_error), = s.db.execute(
            "SELECT requeues, attempts, last_error FROM outbox WHERE id = ?", (row["id"],))
        requeued_at, = s.db.execute(
            "SELECT requeued_at FROM dead_letters WHERE outbox_id = ?", (row["id"],)).fetchone()
    finally:
        s.close()
    assert requeues == 1 and attempts == 1 and last_error.startswith("requeued (was: HTTP 400")
    assert requeued_at is not None


def test_requeue_all_dead_with_daemon_stopped_then_started(tmp_path, disp):
    cfg, toml = _setup(tmp_path, disp)
    with GatewayThread(cfg) as gw:
        _dead_letter_one(gw, disp, 0x00020001)
        _dead_letter_one(gw, disp, 0x00020002, dead=2)
    # diag names the command and the ids while the daemon is stopped
    res = _cli("diag", "-c", str(toml), "--json", "--only", "dead_letters")
    doc = json.loads(res.stdout)
    dl = next(r for r in doc["results"] if r["id"] == "dead_letters")
    assert dl["status"] == "WARN" and "panicgw outbox requeue" in dl["hint"]

    res = _cli("outbox", "list", "--db", str(cfg.db_path))
    assert res.returncode == 0 and "dead" in res.stdout and "requeue" in res.stdout
    for bad in (["requeue", "--db", str(cfg.db_path)],
                ["requeue", "--db", str(cfg.db_path), "1", "--all-dead"],
                ["requeue", "--db", str(tmp_path / "nope.db"), "--all-dead"]):
        res = _cli("outbox", *bad)
        assert res.returncode == (3 if "nope.db" in bad[2] else 2), (bad, res.stderr)
    assert not (tmp_path / "nope.db").exists()
    res = _cli("outbox", "requeue", "--db", str(cfg.db_path), "--all-dead")
    assert res.returncode == 0 and "requeued 2" in res.stdout, res.stderr

    res = _cli("diag", "-c", str(toml), "--json", "--only", "dead_letters")
    dl = next(r for r in json.loads(res.stdout)["results"] if r["id"] == "dead_letters")
    assert dl["status"] == "PASS"

    with GatewayThread(cfg) as gw:
        assert wait_until(lambda: len(_tests(disp)) == 2)
        assert wait_until(lambda: gw.status()["outbox"]["pending"] == 0)
        assert gw.status()["outbox"]["dead"] == 0


def test_list_shows_when_waiting_items_will_really_be_tried(tmp_path, disp):
    """Issue 11.9: during an outage the forwarder sends one probe per pause (the most urgent
    message) and the rest after a probe succeeds, so a stored retry time can be long past.
    The list shows the real next try, never a time in the past."""
    cfg, toml = _setup(tmp_path, disp)
    with GatewayThread(cfg) as gw:
        assert wait_until(lambda: any(b["event"] == "gateway_checkin" for b in disp.bodies()))
        disp.call(_fail(disp, 500))
        assert _post(gw, uplink(frames.TEST, 0x00030001, wifi=True)) == 200
        assert _post(gw, uplink(frames.ALARM, 0x00030002, wifi=True)) == 200
        assert wait_until(lambda: gw.status()["dispatch"]["failures_in_row"] >= 3)

        def stored_next_at() -> dict[str, float]:
            s = Store(cfg.db_path, readonly=True)
            try:
                return {r["event"]: r["next_at"] for r in s.outbox_list(("pending",))}
            finally:
                s.close()

        # the TEST waits behind the alarm's probes: its stored retry time passes
        test_next = stored_next_at()["test"]
        assert wait_until(lambda: time.time() > test_next + 0.5)
        before = time.time()
        res = _cli("outbox", "list", "-c", str(toml), "--json")
        assert res.returncode == 0, res.stderr
        rows = {r["event"]: r for r in json.loads(res.stdout)}
        assert rows["test"]["next_at"] < before  # what a naive list would show
        for r in rows.values():
            assert r["next_try_at"] >= before, r
        assert rows["panic"]["next_try"] == "next_probe"
        assert rows["test"]["next_try"] == "after_probe"
        res = _cli("outbox", "list", "-c", str(toml))
        assert "after probe" in res.stdout and "dispatch is failing" in res.stdout
        disp.call(_heal(disp))
        assert wait_until(lambda: gw.status()["outbox"]["pending"] == 0)
    # daemon stopped: nothing is tried until it runs again
    s = Store(cfg.db_path)
    with s.transaction():
        s.enqueue("i-x", 1, {"event": "test"}, time.time() - 60)
    s.close()
    res = _cli("outbox", "list", "--gateway-db", str(cfg.db_path), "--json")
    [row] = json.loads(res.stdout)
    assert row["next_try_at"] is None and row["next_try"] == "daemon_stopped"
    res = _cli("outbox", "list", "--gateway-db", str(cfg.db_path))
    assert "at start" in res.stdout and "not running" in res.stdout
