"""The supervision runner's SQL prefilter never hides an event the rules would raise.

The rules evaluated over *every* device (what the daemon did before the prefilter) and over
the candidates only must raise exactly the same events, for random device states, clocks and
gateway start times; and the events it stores reach the outbox with their state changes.
"""

from __future__ import annotations

import random

import pytest

from panicgw.registry import DeviceRecord, SiteRecord
from panicgw.store import Store
from panicgw.supervise import runner as sr
from panicgw.supervise.rule import DeviceView, Supervisor

NOW = 1_800_000_000.0


def _populate(store: Store, rng: random.Random, n: int) -> None:
    site = SiteRecord("Toko", "shop", "Jl. Contoh 1", -6.9, 107.6, "Ani", "+62811")
    recs = [DeviceRecord(0x100 + i, bytes(16), site, f"b{i}", ["lora"],
                         rng.choice([60, 600, 3600]), "0.2.0") for i in range(n)]
    store.upsert_devices(recs)
    with store.transaction():
        for r in recs:
            if rng.random() < 0.3:  # (re)enrolled recently: registered, rekeyed
                store.db.execute("UPDATE devices SET enrolled_at = ? WHERE device_id = ?",
                                 (NOW - rng.uniform(0, 3 * r.supervision_s + 900), r.device_id))
            roll = rng.random()
            if roll < 0.15:
                continue  # never heard
            at = NOW - rng.uniform(0, 3 * r.supervision_s + 900)
            mv = rng.choice([3000, 3350, 3420, 3700])
            store.save_replay(r.device_id, rng.randrange(1, 500), 1)
            store.heard(r.device_id, at, "lora", -100.0, 5.0, mv, rng.random() < 0.1)
            store.set_supervision(r.device_id, "lost" if rng.random() < 0.2 else "ok",
                                  rng.random() < 0.15)


def _all_views(store: Store) -> list[DeviceView]:
    states = store.device_states()
    out = []
    for rec in store.list_devices():
        st = states.get(rec.device_id)
        out.append(DeviceView(
            rec.device_id, rec.supervision_s, st.last_heard if st else None,
            st.supervision if st else "ok", bool(st.battery_alarm) if st else False,
            bool(st.low_battery) if st else False, st.battery_mv if st else None,
            st.replay_highest if st and st.replay_highest >= 0 else None,
            store.enrolled_at(rec.device_id)))
    return out


def _order(e) -> tuple:
    return (e.device_id, e.event)


@pytest.mark.parametrize("seed", range(6))
def test_candidates_raise_what_a_full_scan_raises(tmp_path, seed):
    rng = random.Random(seed)
    store = Store(tmp_path / "gw.db")
    _populate(store, rng, 400)
    views = _all_views(store)
    checked = 0
    for started_ago in (10.0, 1000.0, 20000.0):
        for low_mv in (None, 3400):
            sup = Supervisor(started_at=NOW - started_ago, low_battery_mv=low_mv)
            full = sup.evaluate(views, NOW)
            cands = sr.candidates(store, sup, NOW)
            assert len({v.device_id for v in cands}) == len(cands)
            assert sorted(sup.evaluate(cands, NOW), key=_order) == sorted(full, key=_order)
            assert len(cands) < len(views)  # it does prefilter
            checked += len(full)
    assert checked > 50  # the states produced every kind of event, not an empty comparison
    store.close()


def test_a_device_enrolled_after_the_gateway_started_is_not_lost_until_its_own_limit(tmp_path):
    """Issue 11.1: silence counts from registration (or a rekey), not from gateway start."""
    store = Store(tmp_path / "gw.db")
    site = SiteRecord("Toko", "shop", "Jl. Contoh 1", -6.9, 107.6, "Ani", "+62811")
    sup = Supervisor(started_at=NOW - 985)  # the gateway has been up 985 s
    store.upsert_device(DeviceRecord(0xABC, bytes(16), site, "kasir", ["lora"], 60), now=NOW)
    limit = sup.limit_s(60)  # 2 x 60 + 300 = 420 s
    for t in (NOW + 2, NOW + limit):
        assert sr.evaluate(store, sup, t, bridge_last_seen=None, bridge_enabled=False,
                           checkins=False) == []
    # a rekey restarts the count: the button is being re-provisioned
    assert store.rekey(0xABC, bytes(range(16)), now=NOW + 400) == 2
    assert sr.evaluate(store, sup, NOW + 400 + limit, bridge_last_seen=None,
                       bridge_enabled=False, checkins=False) == []
    late = sr.evaluate(store, sup, NOW + 400 + limit + 1, bridge_last_seen=None,
                       bridge_enabled=False, checkins=False)
    assert [(e.event, e.device_id) for e in late] == [("supervision_lost", 0xABC)]
    assert "silent for 421 s" in late[0].detail
    store.close()


def test_stored_events_reach_the_outbox_with_their_state(tmp_path):
    store = Store(tmp_path / "gw.db")
    site = SiteRecord("Toko", "shop", "Jl. Contoh 1", -6.9, 107.6, "Ani", "+62811")
    store.upsert_devices([DeviceRecord(0xABC, bytes(16), site, "kasir", ["lora"], 60, "0.2.0")])
    with store.transaction():
        store.save_replay(0xABC, 7, 1)
        store.heard(0xABC, NOW - 1000, "lora", -101.0, 4.5, 3700, False)
    sup = Supervisor(started_at=NOW - 5000)
    events = sr.evaluate(store, sup, NOW, bridge_last_seen=None, bridge_enabled=False,
                         checkins=False)
    assert [(e.event, e.device_id, e.counter) for e in events] == [
        ("supervision_lost", 0xABC, 7)]
    assert sr.store_events(store, "gw-1", events) == events
    assert store.device_state(0xABC).supervision == "lost"
    item = store.due(NOW + 1, 10)[0]
    assert item.payload["event"] == "supervision_lost"
    assert item.payload["contact_id"]["code"] == 381
    assert item.payload["device"]["label"] == "kasir"
    # evaluated again: lost already recorded, nothing new
    assert sr.evaluate(store, sup, NOW + 5, bridge_last_seen=None, bridge_enabled=False,
                       checkins=False) == []
    store.close()


def test_a_device_heard_between_decision_and_store_raises_no_loss(tmp_path):
    """The runner decides on a read snapshot; the pipeline may store a frame from the same
    device before the events reach the writer. Storing the stale 381 would send dispatch a
    false "supervision lost" followed at once by a 3381."""
    store = Store(tmp_path / "gw.db")
    site = SiteRecord("Toko", "shop", "Jl. Contoh 1", -6.9, 107.6, "Ani", "+62811")
    store.upsert_devices([DeviceRecord(0xABC, bytes(16), site, "kasir", ["lora"], 60, "0.2.0"),
                          DeviceRecord(0xDEF, bytes(16), site, "gudang", ["lora"], 60, "0.2.0")])
    with store.transaction():
        for dev in (0xABC, 0xDEF):
            store.save_replay(dev, 7, 1)
            store.heard(dev, NOW - 1000, "lora", -101.0, 4.5, 3700, False)
    sup = Supervisor(started_at=NOW - 5000)
    events = sr.evaluate(store, sup, NOW, bridge_last_seen=None, bridge_enabled=False,
                         checkins=False)
    assert sorted(e.device_id for e in events) == [0xABC, 0xDEF]
    with store.transaction():  # a heartbeat from 0xABC is stored in between
        store.heard(0xABC, NOW + 0.5, "lora", -99.0, 6.0, 3700, False)
    stored = sr.store_events(store, "gw-1", events)
    assert [(e.event, e.device_id) for e in stored] == [("supervision_lost", 0xDEF)]
    assert store.device_state(0xABC).supervision == "ok"
    assert store.device_state(0xDEF).supervision == "lost"
    assert [i.payload["device"]["id"] for i in store.due(NOW + 1, 10)] == ["00000DEF"]
    # the next tick decides on the new state: 0xABC is fine, 0xDEF already recorded
    assert sr.evaluate(store, sup, NOW + 5, bridge_last_seen=None, bridge_enabled=False,
                       checkins=False) == []
    store.close()


def test_undo_point_lets_a_failed_store_raise_bridge_trouble_and_checkin_again(tmp_path):
    store = Store(tmp_path / "gw.db")
    sup = Supervisor(started_at=NOW - 5000, bridge_missing_s=300.0, checkin_interval_s=3600.0)
    undo = sr.undo_point(sup)
    first = sr.evaluate(store, sup, NOW, bridge_last_seen=None, bridge_enabled=True,
                        checkins=True)
    assert sorted(e.event for e in first) == ["gateway_checkin", "gateway_trouble"]
    # storing them failed: without the undo, the next tick would believe both were sent
    assert sr.evaluate(store, sup, NOW + 5, bridge_last_seen=None, bridge_enabled=True,
                       checkins=True) == []
    undo()
    again = sr.evaluate(store, sup, NOW + 5, bridge_last_seen=None, bridge_enabled=True,
                        checkins=True)
    assert sorted(e.event for e in again) == ["gateway_checkin", "gateway_trouble"]
    store.close()
