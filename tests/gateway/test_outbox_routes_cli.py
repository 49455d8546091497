"""`panicgw outbox` with a DC-09 route beside dispatch (issue 13): per route the counts and
the items not delivered, `list --route`, and `requeue --route sia:<name>` for an item dead
on the DC-09 route only. A real DB written by the real store; the daemon is not running."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

from panicgw.store import PRIO_ALARM, PRIO_EVENT, Store

CLI = [sys.executable, "-c", "from panicgw.cli import app; app()"]
ROUTE = "sia:centre"


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=60)


def _db(tmp_path: Path) -> tuple[Path, dict[str, int]]:
    """An alarm delivered on dispatch and pending on the DC-09 route; a TEST pending on
    dispatch and dead (DUH) on the DC-09 route; a check-in delivered on both."""
    path = tmp_path / "gateway.db"
    s = Store(path)
    s.routes = (ROUTE,)
    now = time.time()
    with s.transaction():
        ids = {"panic": s.enqueue("inc-a", PRIO_ALARM, {"event": "panic"}, now - 30),
               "test": s.enqueue("inc-t", PRIO_EVENT, {"event": "test"}, now - 20),
               "checkin": s.enqueue("inc-c", 3, {"event": "gateway_checkin"}, now - 10)}
    s.delivered(ids["panic"], now, 200, "ok")
    s.delivered(ids["checkin"], now, 200, "ok")
    s.take_route_seq(ROUTE, ids["panic"])
    s.take_route_seq(ROUTE, ids["test"])
    s.route_dead(ids["test"], ROUTE, "DUH from 127.0.0.1:9 (seq 0002)")
    s.route_delivered(ids["checkin"], ROUTE, now, "ACK")
    s.close()
    return path, ids


def test_summary_shows_each_route_with_counts_and_items(tmp_path: Path) -> None:
    path, ids = _db(tmp_path)
    res = _cli("outbox", "--db", str(path), "--json")
    assert res.returncode == 1, res.stderr  # something is waiting
    routes = {r["route"]: r for r in json.loads(res.stdout)["routes"]}
    assert set(routes) == {"dispatch", ROUTE}
    d, sia = routes["dispatch"], routes[ROUTE]
    assert (d["pending"], d["delivered"], d["dead"]) == (1, 2, 0)
    assert (sia["pending"], sia["delivered"], sia["dead"], sia["pending_alarms"]) == (1, 1, 1, 1)
    assert [(i["id"], i["state"]) for i in d["items"]] == [(ids["test"], "pending")]
    assert [(i["id"], i["state"], i["seq"]) for i in sia["items"]] == [
        (ids["panic"], "pending", 1), (ids["test"], "dead", 2)]
    assert sia["items"][0]["next_try"] == "daemon_stopped"
    res = _cli("outbox", "--db", str(path))
    assert res.returncode == 1
    assert "dispatch: 1 pending (0 alarm(s)), 2 delivered, 0 dead" in res.stdout
    assert f"{ROUTE}: 1 pending (1 alarm(s)), 1 delivered, 1 dead" in res.stdout
    assert "seq 0002" in res.stdout and "DUH" in res.stdout and "--route" in res.stdout


def test_list_shows_both_routes_and_filters_one(tmp_path: Path) -> None:
    path, ids = _db(tmp_path)
    res = _cli("outbox", "list", "--db", str(path), "--json")
    assert res.returncode == 0, res.stderr
    rows = [(r["route"], r["id"], r["state"]) for r in json.loads(res.stdout)]
    assert rows == [(ROUTE, ids["panic"], "pending"), ("dispatch", ids["test"], "pending"),
                    (ROUTE, ids["test"], "dead")]
    res = _cli("outbox", "list", "--db", str(path), "--dead", "--route", ROUTE, "--json")
    assert [(r["route"], r["id"]) for r in json.loads(res.stdout)] == [(ROUTE, ids["test"])]
    res = _cli("outbox", "list", "--db", str(path), "--dead", "--route", "dispatch")
    assert res.returncode == 1 and "no dead letters" in res.stdout
    res = _cli("outbox", "list", "--db", str(path))
    assert ROUTE in res.stdout and "--route sia:<name>" in res.stdout
    res = _cli("outbox", "list", "--db", str(path), "--route", "centre")
    assert res.returncode == 2 and "dispatch or sia:<name>" in res.stderr


def test_requeue_a_dead_item_on_the_dc09_route(tmp_path: Path) -> None:
    path, ids = _db(tmp_path)
    # not dead on dispatch: nothing to do there
    res = _cli("outbox", "requeue", "--db", str(path), str(ids["test"]))
    assert res.returncode == 1
    res = _cli("outbox", "requeue", "--db", str(path), "--route", ROUTE, str(ids["test"]),
               str(ids["panic"]), "--json")
    assert res.returncode == 0, res.stderr
    doc = json.loads(res.stdout)
    assert doc["requeued"] == [ids["test"]] and doc["not_dead"] == [ids["panic"]]
    s = Store(path, readonly=True)
    try:
        [row] = [r for r in s.route_list(("pending", "dead")) if r["id"] == ids["test"]]
        assert row["state"] == "pending" and row["attempts"] == 0 and row["seq"] == 2
        assert row["last_error"].startswith("requeued (was: DUH")
        assert s.route_counts()[ROUTE]["dead"] == 0
        # dispatch's own state of the item is untouched
        assert [r["state"] for r in s.outbox_list(("pending",)) if r["id"] == ids["test"]] \
            == ["pending"]
    finally:
        s.close()
    res = _cli("outbox", "requeue", "--db", str(path), "--route", ROUTE, "--all-dead")
    assert res.returncode == 1 and "no dead letters" in res.stdout
