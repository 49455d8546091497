"""Registry export format, validation messages and the SQLite store's durability settings."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest

from panicgw import registry, store
from panicgw.registry import DeviceRecord, RegistryError, SiteRecord


def _rec(device_id: int = 0x12345678, **kw) -> DeviceRecord:
    site = SiteRecord("Toko Maju", "shop", "Jl. Merdeka 1", -6.2, 106.8, "Budi", "+62811")
    return DeviceRecord(device_id=device_id, key=bytes(range(16)), site=site, label="counter",
                        paths=["lora", "wifi"], **kw)


def test_export_roundtrip_mode_0600(tmp_path):
    path = tmp_path / "reg.json"
    registry.write_export(path, [_rec(1), _rec(2, firmware="1.0.0")])
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    doc = json.loads(path.read_text())
    assert doc["format"] == "panic-button-registry/1"
    assert doc["devices"][0]["key"] == bytes(range(16)).hex()
    back = registry.read_export(path)
    assert [r.device_id for r in back] == [1, 2]
    assert back[1].firmware == "1.0.0" and back[0].site.lat == -6.2


@pytest.mark.parametrize(
    ("mutate", "field"),
    [
        (lambda d: d.update(key="abcd"), "'key'"),
        (lambda d: d.update(paths=["carrier-pigeon"]), "'paths'"),
        (lambda d: d["site"].update(lat=123.0), "'site.lat'"),
        (lambda d: d["site"].update(kind="office"), "'site.kind'"),
        (lambda d: d["site"].pop("name"), "'site.name'"),
        (lambda d: d.update(supervision_s=5), "'supervision_s'"),
        (lambda d: d.pop("key"), "'key'"),
    ],
)
def test_read_export_names_bad_field_and_device(tmp_path, mutate, field):
    path = tmp_path / "reg.json"
    registry.write_export(path, [_rec(0xABCDEF01)])
    doc = json.loads(path.read_text())
    mutate(doc["devices"][0])
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError) as e:
        registry.read_export(path)
    assert field in str(e.value) and "0xABCDEF01" in str(e.value)


def test_duplicate_ids_and_bad_format(tmp_path):
    path = tmp_path / "reg.json"
    registry.write_export(path, [_rec(7)])
    doc = json.loads(path.read_text())
    doc["devices"].append(doc["devices"][0])
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="appears twice"):
        registry.read_export(path)
    path.write_text('{"format": "other"}')
    with pytest.raises(RegistryError, match="'format'"):
        registry.read_export(path)


def test_repr_never_shows_key():
    assert bytes(range(16)).hex() not in repr(_rec())


def test_register_creates_db_with_migrations_and_mode(tmp_path):
    db = tmp_path / "data" / "gw.db"
    registry.register(db, _rec(5))
    registry.register(db, _rec(5, supervision_s=600))  # upsert
    assert stat.S_IMODE(os.stat(db).st_mode) == 0o600
    s = store.Store(db)
    try:
        assert s.schema_version == len(store.MIGRATIONS)
        assert s.db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert s.db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
        devs = s.list_devices()
        assert len(devs) == 1 and devs[0].supervision_s == 600
        assert devs[0].key == bytes(range(16))
        assert s.registry_generation() == 2
    finally:
        s.close()
    for suffix in ("-wal", "-shm"):
        p = str(db) + suffix
        if os.path.exists(p):
            assert stat.S_IMODE(os.stat(p).st_mode) & 0o077 == 0


def test_newer_schema_refused(tmp_path):
    db = tmp_path / "gw.db"
    store.Store(db).close()
    con = sqlite3.connect(db)
    con.execute("PRAGMA user_version=99")
    con.close()
    with pytest.raises(store.StoreError, match="upgrade panicgw"):
        store.Store(db)


def test_outbox_priority_and_lifecycle(tmp_path):
    s = store.Store(tmp_path / "gw.db")
    with s.transaction():
        hb = s.enqueue("i-hb", store.PRIO_OTHER, {"k": "hb"}, at=1.0)
        alarm = s.enqueue("i-alarm", store.PRIO_ALARM, {"k": "alarm"}, at=5.0)
        test = s.enqueue("i-test", store.PRIO_EVENT, {"k": "test"}, at=2.0)
    assert [i.id for i in s.due(10.0, 10)] == [alarm, test, hb]
    s.reschedule(alarm, 20.0, "HTTP 500")
    assert [i.id for i in s.due(10.0, 10)] == [test, hb]
    s.delivered(test, 11.0, 200, "ok")
    s.dead_letter(hb, 12.0, "HTTP 422")
    assert [i.id for i in s.due(30.0, 10)] == [alarm]
    assert s.due(30.0, 10)[0].attempts == 1
    assert s.dead_letters()[0]["reason"] == "HTTP 422"
    assert s.outbox_counts()["pending"] == 1
    s.close()


def test_heartbeat_pruning_keeps_alarms_and_recent(tmp_path):
    s = store.Store(tmp_path / "gw.db")
    with s.transaction():
        old_hb = s.insert_event(1, 1, "heartbeat", None, 100.0, 0, 0, 3700, bytes(19))
        s.add_reception(old_hb, "lora", -100, 5, 100.0, False)
        s.insert_event(1, 2, "alarm", "i-1", 100.0, 0, 0, 3700, bytes(19))
        s.insert_event(1, 3, "heartbeat", None, 5000.0, 0, 0, 3700, bytes(19))
        pending_hb = s.insert_event(1, 4, "heartbeat", None, 100.0, 0, 0, 3700, bytes(19))
        s.enqueue("i-2", store.PRIO_OTHER, {"x": 1}, 100.0, pending_hb)
    assert s.prune_heartbeats(1000.0) == 1
    left = {(e["counter"], e["kind"]) for e in s.recent_events()}
    assert left == {(2, "alarm"), (3, "heartbeat"), (4, "heartbeat")}
    assert s.receptions(old_hb) == []
    s.close()
