"""Per-route delivery state in the outbox (schema v5): the dispatch route untouched, the
``sia:<name>`` rows written with the item, the sequence number stored before the first
send and kept across reopening the DB."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from panicgw.store import MIGRATIONS, PRIO_ALARM, PRIO_OTHER, Store
from panicgw.store.routes import SEQ_LAST

ROUTE = "sia:centre"


def _store(path: Path, routes: tuple[str, ...] = (ROUTE,)) -> Store:
    s = Store(path)
    s.routes = routes
    return s


def _add(s: Store, prio: int = PRIO_ALARM, at: float = 100.0, event: str = "panic") -> int:
    with s.transaction():
        return s.enqueue(f"inc-{at}", prio, {"event": event}, at)


def test_enqueue_writes_one_row_per_route_with_the_item(tmp_path: Path) -> None:
    s = _store(tmp_path / "gw.db", (ROUTE, "sia:backup-centre"))
    item = _add(s)
    assert s.route_counts() == {
        r: {"pending": 1, "delivered": 0, "dead": 0, "pending_alarms": 1}
        for r in (ROUTE, "sia:backup-centre")}
    assert [i.id for i in s.due(1e9, 10)] == [item]  # the dispatch route as before


def test_without_routes_nothing_changes(tmp_path: Path) -> None:
    s = _store(tmp_path / "gw.db", ())
    _add(s)
    assert s.route_counts() == {} and len(s.due(1e9, 10)) == 1


def test_a_rolled_back_event_leaves_no_route_rows(tmp_path: Path) -> None:
    s = _store(tmp_path / "gw.db")
    with pytest.raises(RuntimeError), s.transaction():
        s.enqueue("inc", PRIO_ALARM, {"event": "panic"}, 1.0)
        raise RuntimeError
    assert s.route_counts() == {}


def test_the_sequence_number_is_taken_once_and_survives_reopening(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    s = _store(path)
    a, b = _add(s, at=1.0), _add(s, at=2.0)
    assert s.take_route_seq(ROUTE, b) == 1  # in the order they are first sent
    assert s.take_route_seq(ROUTE, b) == 1
    assert s.take_route_seq(ROUTE) == 2  # a link test
    s.close()
    s = _store(path)
    assert s.take_route_seq(ROUTE, b) == 1 and s.take_route_seq(ROUTE, a) == 3
    assert [(i.id, i.seq) for i in s.route_due(ROUTE, 1e9, 10)] == [(a, 3), (b, 1)]
    assert s.route_seq(ROUTE) == 3


def test_the_counter_wraps_to_one(tmp_path: Path) -> None:
    s = _store(tmp_path / "gw.db")
    s.db.execute("INSERT INTO route_sequences VALUES (?, ?)", (ROUTE, SEQ_LAST))
    assert s.take_route_seq(ROUTE) == 1


def test_route_states_and_order(tmp_path: Path) -> None:
    s = _store(tmp_path / "gw.db")
    other = _add(s, PRIO_OTHER, at=1.0, event="gateway_checkin")
    alarm = _add(s, PRIO_ALARM, at=2.0)
    assert [i.id for i in s.route_due(ROUTE, 1e9, 10)] == [alarm, other]
    s.route_reschedule(alarm, ROUTE, 50.0, "timeout: no reply")
    assert [i.id for i in s.route_due(ROUTE, 10.0, 10)] == [other]
    s.route_dead(other, ROUTE, "DUH")
    s.route_delivered(alarm, ROUTE, 60.0, "ACK")
    assert s.route_counts()[ROUTE] == {"pending": 0, "delivered": 1, "dead": 1,
                                       "pending_alarms": 0}
    assert [r["state"] for r in s.route_list(("delivered", "dead"))] == ["delivered", "dead"]
    assert [i.id for i in s.due(1e9, 10)] == [alarm, other]  # dispatch: both still pending


def test_a_v4_database_is_migrated_with_its_outbox_kept(tmp_path: Path) -> None:
    path = tmp_path / "gw.db"
    db = sqlite3.connect(path)
    for v, script in enumerate(MIGRATIONS[:4], 1):
        db.executescript(script)
        db.execute(f"PRAGMA user_version={v}")
    db.execute("INSERT INTO outbox (incident_id, priority, payload, created_at, next_at) "
               "VALUES ('old', 0, '{\"event\":\"panic\"}', 1, 1)")
    db.commit()
    db.close()
    s = _store(path)
    assert s.schema_version == len(MIGRATIONS) == 5
    assert [i.incident_id for i in s.due(1e9, 10)] == ["old"] and s.route_counts() == {}
