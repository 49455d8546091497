"""Registry export format, validation messages and the SQLite store's durability settings."""

from __future__ import annotations

import json
import os
import sqlite3
import stat

import pytest

from panicgw import access, registry, store
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


def test_register_never_creates_a_db(tmp_path):
    """Issue 10.3: a mistyped path must be an error, not a fresh registry nobody reads."""
    db = tmp_path / "data" / "gw.db"
    with pytest.raises(access.AccessError, match="no gateway DB"):
        access.register(db, _rec(5))
    assert not db.exists() and not db.parent.exists()
    junk = tmp_path / "notes.db"
    sqlite3.connect(junk).execute("CREATE TABLE t (x)").connection.close()
    with pytest.raises(access.AccessError, match="not a gateway DB"):
        access.register(junk, _rec(5))
    assert {p.name for p in tmp_path.iterdir()} == {"notes.db"}


def test_register_into_the_daemons_db_with_migrations_and_mode(tmp_path):
    db = tmp_path / "data" / "gw.db"
    store.Store(db).close()  # what `panicgw run` (or `panicgw setup`) does first
    access.register(db, _rec(5))
    opened = access.open_db(db)
    try:
        access.register(opened, _rec(5, supervision_s=600))  # upsert via an opened Store
    finally:
        opened.close()
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


def test_savepoint_undoes_only_its_block(tmp_path):
    """The pipeline's per-frame undo: the failed block's rows go, the transaction's stay."""
    s = store.Store(tmp_path / "gw.db")
    with s.transaction():
        kept = s.enqueue("i-kept", store.PRIO_EVENT, {"k": "kept"}, at=1.0)
        with pytest.raises(RuntimeError), s.savepoint("frame"):
            s.enqueue("i-undone", store.PRIO_ALARM, {"k": "undone"}, at=2.0)
            raise RuntimeError("payload failed")
        with s.savepoint("frame"):
            done = s.enqueue("i-done", store.PRIO_ALARM, {"k": "done"}, at=3.0)
    assert sorted(i.id for i in s.due(10.0, 10)) == sorted([kept, done])
    with pytest.raises(ValueError):
        s.savepoint("x; DROP TABLE outbox").__enter__()
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


# -- key generations (issue 10.4, contract C4) ----------------------------------------------


def test_export_carries_key_gen_and_old_files_read_as_generation_1(tmp_path):
    path = tmp_path / "reg.json"
    registry.write_export(path, [_rec(1, key_gen=3)])
    doc = json.loads(path.read_text())
    assert doc["devices"][0]["key_gen"] == 3
    assert registry.read_export(path)[0].key_gen == 3
    del doc["devices"][0]["key_gen"]  # an export from before key generations
    path.write_text(json.dumps(doc))
    assert registry.read_export(path)[0].key_gen == 1
    doc["devices"][0]["key_gen"] = 0
    path.write_text(json.dumps(doc))
    with pytest.raises(RegistryError, match="'key_gen'"):
        registry.read_export(path)


def _migrated_v2_db(path):
    """A DB as a gateway before key generations left it (schema v2, one device)."""
    con = sqlite3.connect(path, isolation_level=None)
    for version, script in enumerate(store.MIGRATIONS[:2], start=1):
        con.executescript(script)
        con.execute(f"PRAGMA user_version={version}")
    con.execute("INSERT INTO sites (name, kind, address, lat, lon) VALUES "
                "('Toko', 'shop', 'Jl. 1', 0, 0)")
    con.execute("INSERT INTO devices (device_id, key, site_id, paths, supervision_s, "
                "registered_at, updated_at) VALUES (7, ?, 1, '[\"lora\"]', 600, 123.0, 124.0)",
                (bytes(16),))
    con.close()


def test_migration_gives_existing_devices_generation_1_and_their_registration_time(tmp_path):
    db = tmp_path / "gw.db"
    _migrated_v2_db(db)
    s = store.Store(db)
    try:
        assert s.schema_version == len(store.MIGRATIONS)
        assert s.get_device(7).key_gen == 1
        assert s.enrolled_at(7) == 123.0
        assert s.rekey(7, bytes(range(16)), now=500.0) == 2
        assert s.rekey(7, bytes(range(1, 17)), now=600.0) == 3
        assert s.enrolled_at(7) == 600.0
        assert s.rekey(99, bytes(16)) is None  # not registered
    finally:
        s.close()


def test_import_of_an_older_generation_or_a_forked_key_is_refused(tmp_path):
    s = store.Store(tmp_path / "gw.db")
    try:
        s.upsert_device(_rec(9), now=100.0)
        new_key = bytes(range(100, 116))
        assert s.rekey(9, new_key, now=200.0) == 2
        with pytest.raises(registry.KeyConflictError) as e:
            s.upsert_devices([_rec(10), _rec(9)])  # the provision export, gen 1
        msg = str(e.value)
        assert "00000009" in msg and "generation 2" in msg and "generation 1" in msg
        assert "--allow-older-key" in msg and "panicgw devices export" in msg
        assert s.get_device(9).key == new_key and s.get_device(10) is None  # all or nothing
        with pytest.raises(registry.KeyConflictError, match="forked key"):
            s.upsert_device(_rec(9, key_gen=2))  # same generation, another key
        assert s.get_device(9).key == new_key
        # the same key again (a sync between gateways) is fine and keeps generation 2
        same = _rec(9, key_gen=1)
        same.key = new_key
        s.upsert_device(same, now=300.0)
        assert (s.get_device(9).key_gen, s.enrolled_at(9)) == (2, 200.0)
        # a newer generation from elsewhere is taken as it is
        newer = _rec(9, key_gen=5)
        newer.key = bytes(range(50, 66))
        s.upsert_device(newer, now=400.0)
        assert (s.get_device(9).key_gen, s.enrolled_at(9)) == (5, 400.0)
        # the override: the file's key becomes the newest generation
        s.upsert_device(_rec(9), now=500.0, allow_older_key=True)
        assert (s.get_device(9).key, s.get_device(9).key_gen) == (bytes(range(16)), 6)
    finally:
        s.close()


def test_key_file_records_its_generation(tmp_path):
    path = tmp_path / "k.key"
    registry.write_key_file(path, 0x1234ABCD, bytes(range(16)), key_gen=4)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    kf = registry.read_key_file_full(path)
    assert (kf.device_id, kf.key, kf.key_gen) == (0x1234ABCD, bytes(range(16)), 4)
    assert registry.read_key_file(path) == (0x1234ABCD, bytes(range(16)))
    path.write_text(bytes(range(16)).hex())
    assert registry.read_key_file_full(path).key_gen is None
