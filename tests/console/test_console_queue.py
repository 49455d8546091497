"""The queue's rules on a real console database (the migrations the server runs): priority
then age, floods on one line, tests and restores logged not queued, ownership, the plan,
closing, escalation, silent gateways, and the append-only audit."""

from __future__ import annotations

import sqlite3

import pytest
from consolekit import body

from panicconsole import auth, plans
from panicconsole.alarms import (
    audit,
    directory,
    escalation,
    gateway_watch,
    handling,
    intake,
    ownership,
    retention,
    views,
)
from panicconsole.alarms.rules import ActionError
from panicconsole.db import connect

T0 = 1_800_000_000.0


@pytest.fixture
def db(tmp_path):
    c = connect(tmp_path / "console.db")
    yield c
    c.close()


def tx(db: sqlite3.Connection, fn, *a, **kw):
    db.execute("BEGIN IMMEDIATE")
    try:
        out = fn(db, *a, **kw)
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")
    return out


def apply(db, doc, now=T0):
    return tx(db, intake.apply_event, doc, doc["idempotency_key"], now)


def user(db, name, role="operator"):
    uid = tx(db, auth.add_user, name, "x" * 12, role, min_len=10)
    return {"id": uid, "username": name, "role": role}


def queue(db):
    return [(a["event"], a["priority"]) for a in views.open_alarms(db)]


def test_priority_then_age(db):
    apply(db, body("supervision_lost", device=0x3, counter=1), T0)
    apply(db, body("tamper", device=0x2, counter=1), T0 + 1)
    apply(db, body("panic", device=0x1, counter=1), T0 + 2)
    apply(db, body("panic", device=0x4, counter=1, site=1), T0 + 3)
    apply(db, body("low_battery", device=0x5, counter=1, site=2), T0 + 0.5)
    apply(db, body("gateway_trouble", gateway="gw-b"), T0 + 4)
    got = views.open_alarms(db)
    assert [(a["event"], a["device_id"]) for a in got] == [
        ("panic", "00000001"), ("panic", "00000004"), ("tamper", "00000002"),
        ("supervision_lost", "00000003"), ("low_battery", "00000005"),
        ("gateway_trouble", None)]
    # a restore ends the trouble: it sinks below every open trouble (priority 4)
    apply(db, body("supervision_restore", device=0x3, counter=9), T0 + 5)
    assert queue(db)[-1] == ("supervision_lost", 4)


def test_tests_checkins_cancels_and_restores_never_open_lines(db):
    for doc in (body("test", device=0x7, counter=5), body("gateway_checkin"),
                body("supervision_restore", device=0x8, counter=2),
                body("low_battery_restore", device=0x8, counter=3),
                body("gateway_trouble_restore"), body("cancel", device=0x9, counter=4)):
        assert apply(db, doc).verdict == "accepted"
    assert views.open_alarms(db) == []
    assert [x["event"] for x in views.recent_log(db)] == [
        "cancel", "gateway_trouble_restore", "low_battery_restore", "supervision_restore",
        "gateway_checkin", "test"]
    # a cancel after a panic marks that panic (it stays open until an operator closes it)
    apply(db, body("panic", device=0x9, counter=10))
    apply(db, body("cancel", device=0x9, counter=12), T0 + 3)
    (a,) = views.open_alarms(db)
    assert a["event"] == "panic" and a["cancel_at"] == T0 + 3


def test_flood_of_one_incident_is_one_line(db):
    first = body("panic", counter=0x100, press_count=1)
    apply(db, first)
    for n in range(2, 30):
        apply(db, body("panic", counter=0x100, frame_counter=0x100 + n, press_count=n),
              T0 + n)
    apply(db, body("panic", counter=0x100, frame_counter=0x100 + 1, press_count=1), T0 + 40)
    (a,) = views.open_alarms(db)
    assert a["press_count"] == 29  # a late, lower count never goes backwards
    assert db.execute("SELECT COUNT(*) FROM messages").fetchone()[0] == 30
    # the same device's supervision troubles also merge (new incident ids each time)
    for i in range(3):
        apply(db, body("supervision_lost", device=0x55, counter=i + 1), T0 + 50 + i)
    assert queue(db).count(("supervision_lost", 3)) == 1


def test_duplicate_key_is_answered_without_effect(db):
    doc = body("panic")
    assert apply(db, doc).verdict == "accepted"
    n = db.execute("SELECT COUNT(*) FROM changes").fetchone()[0]
    assert apply(db, doc).verdict == "duplicate"
    assert db.execute("SELECT COUNT(*) FROM changes").fetchone()[0] == n


def test_ownership_plan_close(db):
    ani, budi = user(db, "ani"), user(db, "budi")
    apply(db, body("panic"))
    aid = views.open_alarms(db)[0]["id"]
    with pytest.raises(ActionError) as e:
        tx(db, handling.tick, aid, ani, 0, True, T0)
    assert e.value.code == "err_take_first"
    a = tx(db, ownership.take, aid, ani, T0 + 1)
    assert a["owner"]["username"] == "ani"
    with pytest.raises(ActionError) as e:
        tx(db, ownership.take, aid, budi, T0 + 2)
    assert (e.value.status, e.value.code, e.value.detail) == (409, "err_owned_by",
                                                              {"owner": "ani"})
    for fn, args in ((handling.tick, (0, True)), (handling.note, ("x",)),
                     (handling.close, ("false", "x"))):
        with pytest.raises(ActionError) as e:
            tx(db, fn, aid, budi, *args, T0 + 3)
        assert e.value.code == "err_owned_by"
    a = tx(db, handling.tick, aid, ani, 0, True, T0 + 4)
    assert a["steps"][0]["done"] and a["steps"][0]["by"] == "ani"
    assert "police unit" in a["steps"][0]["text"]["en"]
    assert "polisi" in a["steps"][0]["text"]["id"]
    tx(db, ownership.take_over, aid, budi, T0 + 5, "ani went off shift")
    with pytest.raises(ActionError) as e:
        tx(db, handling.close, aid, budi, "nonsense", "x", T0 + 6)
    assert e.value.code == "err_disposition"
    with pytest.raises(ActionError) as e:
        tx(db, handling.close, aid, budi, "real", "   ", T0 + 6)
    assert e.value.code == "err_note_empty"
    a = tx(db, handling.close, aid, budi, "real", "Unit 7 arrested two", T0 + 7)
    assert a["state"] == "closed" and a["disposition"] == "real"
    assert views.open_alarms(db) == []
    trail = [(x["username"], x["action"], x["detail"]) for x in audit.for_alarm(db, aid)]
    assert trail == [
        ("ani", "take", ""), ("ani", "step", "1. " + plans.DEFAULTS["panic"][0]["en"]),
        ("budi", "take_over", "from ani: ani went off shift"),
        ("budi", "close", "real: Unit 7 arrested two (steps not ticked: 2, 3, 4, 5)")]
    # a press of the same incident after the close opens a new line (never lost)
    apply(db, body("panic", frame_counter=0x00030009, press_count=4), T0 + 8)
    (again,) = views.open_alarms(db)
    assert again["id"] != aid and again["press_count"] == 4 and again["owner"] is None


def test_site_plan_wins_and_line_keeps_its_copy(db):
    apply(db, body("tamper", device=0x77, site=0))
    key = directory.site_key(body("panic")["site"])
    tx(db, plans.save, key, "panic", [{"en": "Unit from Pos 3", "id": "Unit dari Pos 3"}],
       "t", T0)
    tx(db, plans.save, "*", "panic", [{"en": "Precinct plan", "id": "Rencana polsek"}], "t", T0)
    apply(db, body("panic", device=0x1, site=0))
    apply(db, body("panic", device=0x2, site=1))
    by_site = {a["site"]["name"]: a["steps"] for a in views.open_alarms(db)
               if a["event"] == "panic"}
    assert by_site["Toko Emas Mulia"][0]["text"]["en"] == "Unit from Pos 3"
    assert by_site["Apotek Sehat"][0]["text"]["en"] == "Precinct plan"
    tx(db, plans.save, key, "panic", [{"en": "Changed later", "id": "x"}], "t", T0)
    again = [a for a in views.open_alarms(db) if a["site"]["name"] == "Toko Emas Mulia"
             and a["event"] == "panic"][0]
    assert again["steps"][0]["text"]["en"] == "Unit from Pos 3"


def test_escalation_unattended_and_overdue(db):
    ani = user(db, "ani")
    apply(db, body("panic", device=0x1), T0)
    apply(db, body("panic", device=0x2, site=1), T0 + 30)
    assert tx(db, escalation.escalate_due, T0 + 59, 60, 1800) == []
    (first,) = tx(db, escalation.escalate_due, T0 + 61, 60, 1800)
    assert views.alarm_view(db, first)["escalation"] == "unattended"
    assert tx(db, escalation.escalate_due, T0 + 62, 60, 1800) == []  # once
    tx(db, ownership.take, first, ani, T0 + 70)
    assert views.alarm_view(db, first)["escalation"] is None
    esc = tx(db, escalation.escalate_due, T0 + 70 + 1801, 60, 1800)
    assert first in esc and views.alarm_view(db, first)["escalation"] == "overdue"
    assert [x["action"] for x in audit.for_alarm(db, first)] == ["escalate", "take",
                                                                 "escalate"]


def test_silent_gateway_raises_a_line_and_is_restored(db):
    apply(db, body("gateway_checkin", gateway="gw-1"), T0)
    check = gateway_watch.check_gateways
    assert tx(db, check, T0 + 100, 3600) == []
    assert tx(db, check, T0 + 3601, 3600) == ["gw-1"]
    assert tx(db, check, T0 + 7200, 3600) == []  # one line, not one per check
    (line,) = views.open_alarms(db)
    assert line["event"] == "gateway_silent" and line["priority"] == 3
    assert views.gateways(db)[0]["silent"] is True
    apply(db, body("gateway_checkin", gateway="gw-1", at=T0 + 7300), T0 + 7300)
    assert views.gateways(db)[0]["silent"] is False
    assert views.open_alarms(db)[0]["priority"] == 4  # restored, still to be closed


def test_gateway_panel_counts_trouble(db):
    apply(db, body("gateway_trouble", gateway="gw-2", detail="bridge unplugged"))
    apply(db, body("supervision_lost", device=0x31, gateway="gw-2"))
    g = views.gateway_view(db, "gw-2")
    assert g["bridge_trouble"] and g["supervision_lost"] == 1
    assert g["located"] == "sites" and g["lat"] == pytest.approx(-7.7925)
    apply(db, body("gateway_trouble_restore", gateway="gw-2"))
    assert not views.gateway_view(db, "gw-2")["bridge_trouble"]


def test_audit_is_append_only(db):
    tx(db, audit.record, T0, {"username": "ani", "role": "operator"}, "login")
    for sql in ("UPDATE audit SET username = 'x'", "DELETE FROM audit"):
        with pytest.raises(sqlite3.IntegrityError, match="append-only"):
            db.execute(sql)
    assert [tuple(r) for r in db.execute("SELECT username FROM audit")] == [("ani",)]


def test_prune_keeps_the_idempotency_horizon_and_ends_idle_sessions(db):
    ani = user(db, "ani")
    tx(db, auth.new_session, ani["id"], "127.0.0.1")
    doc = body("panic")
    apply(db, doc, T0)
    n = tx(db, retention.prune, T0 + 7 * 86400 - 1, 7, 3600)
    assert n["messages"] == 0 and apply(db, doc, T0 + 7 * 86400).verdict == "duplicate"
    assert db.execute("SELECT COUNT(*) FROM sessions").fetchone()[0] == 0  # idle > 1 h
    n = tx(db, retention.prune, T0 + 8 * 86400, 7, 3600)
    assert n["messages"] == 1
