"""A rekey gives the device a fresh counter space (issue 11 point 8, issue 10 point 4).

`panictool rekey` restarts the button's counter with the new key, so the gateway restarts the
device's replay window with every new key and keeps everything keyed on the counter apart per
key generation: the events' dedupe key is (device, key generation, counter), incidents and
dispatch idempotency keys carry the generation from the second one on (generation 1 keeps the
old format), and a key the device had before comes back with the window it had (its recorded
frames stay refused). The last test runs it against `panicgw run`'s Gateway and a real
dispatch receiver: an alarm after a rekey whose counter equals an old stored alarm's is a new
alarm, stored, forwarded and accepted as a new incident.
"""

from __future__ import annotations

import hashlib
import http.client
import json
import sqlite3

import pytest
from gwharness import DispatchThread, GatewayThread, make_config
from gwkit import DEV, KEY, make_record, uplink, wait_until
from typer.testing import CliRunner

from panicgw import pipeline as pl
from panicgw import registry
from panicgw.cli import app as gw_app
from panicgw.forward import payload as dp
from panicgw.store import MIGRATIONS, Store
from panicproto import frames

NEW_KEY = bytes(range(100, 116))
THIRD_KEY = bytes(range(200, 216))
C = frames.make_counter(1, 1)  # the counter a button starts with after a (re)key


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gw.db")
    s.upsert_device(make_record())
    yield s
    s.close()


def _ack(out: pl.Outcome, key: bytes) -> frames.Downlink:
    assert out.downlink is not None, out
    return frames.decode_downlink(out.downlink, key)


def _window(store: Store) -> tuple[int, int]:
    st = store.device_state(DEV)
    assert st is not None
    return st.replay_highest, st.replay_bitmap


# -- ids and keys ------------------------------------------------------------------------------


def test_generation_one_ids_are_exactly_as_before_and_later_ones_differ():
    # generation 1: the format stored outboxes and dispatch already hold
    assert dp.make_incident_id(DEV, C, "panic") == "0000BEEF-00010001-panic"
    assert dp.make_incident_id(DEV, C, "panic", 1) == "0000BEEF-00010001-panic"
    old = hashlib.sha256(b"panic-dispatch/1|dev|0000BEEF|00010001|panic").hexdigest()[:32]
    assert dp.idempotency_key("panic", device_id=DEV, counter=C) == old
    assert dp.idempotency_key("panic", device_id=DEV, counter=C, key_gen=1) == old
    # from generation 2 on: different for every generation, the same on every gateway
    ids = {dp.make_incident_id(DEV, C, "panic", g) for g in (1, 2, 3)}
    keys = {dp.idempotency_key("panic", device_id=DEV, counter=C, key_gen=g) for g in (1, 2, 3)}
    assert len(ids) == 3 and len(keys) == 3
    assert dp.make_incident_id(DEV, C, "panic", 2) == "0000BEEF-00010001-panic-g2"
    assert dp.idempotency_key("panic", device_id=DEV, counter=C, key_gen=2) == \
        dp.idempotency_key("panic", device_id=DEV, counter=C, key_gen=2)
    # the body carries both, and the schema takes the new incident id
    from panicgw.forward.contract import schema_errors
    site = make_record().site.to_dict()
    body = dp.build_payload(incident_id=dp.make_incident_id(DEV, C, "panic", 2), event="panic",
                            gateway_id="gw", first_heard=1.7e9, site=site,
                            device={"id": DEV, "battery_mv": 3700}, counter=C, key_gen=2)
    assert body["idempotency_key"] == dp.idempotency_key("panic", device_id=DEV, counter=C,
                                                         key_gen=2)
    assert schema_errors(body) == []
    with pytest.raises(dp.PayloadError):
        dp.make_incident_id(DEV, C, "panic", 0)


def test_incident_ids_read_back_and_the_gateways_own_are_not_a_devices():
    for g in (1, 2):
        iid = dp.make_incident_id(DEV, C, "panic", g)
        assert dp.incident_key(iid) == (DEV, C) and dp.incident_counter(iid) == C
    assert dp.incident_key(dp.make_gateway_incident_id("gw-1", "gateway_checkin", 1.7e9)) is None
    assert dp.incident_key(dp.make_gateway_incident_id("cafe", "gateway_checkin", 1.7e9)) is None


# -- the store ---------------------------------------------------------------------------------


def test_migration_to_v4_keeps_events_receptions_and_incidents(tmp_path):
    """A v3 database (before key generations scoped events) is rebuilt in place: event ids,
    receptions and incidents survive, old rows are generation 1, and the same counter can
    then be stored again under another generation."""
    path = tmp_path / "v3.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA foreign_keys=ON")
    for script in MIGRATIONS[:3]:
        db.executescript(script)
    db.execute("PRAGMA user_version=3")
    db.execute("INSERT INTO sites (name, kind, address, lat, lon) VALUES ('T', 'shop', 'A', 0, 0)")
    db.execute("INSERT INTO devices (device_id, key, site_id, paths, supervision_s, "
               "registered_at, updated_at) VALUES (?, ?, 1, '[\"lora\"]', 600, 1, 1)", (DEV, KEY))
    db.execute("INSERT INTO incidents (incident_id, device_id, kind, first_heard, last_heard) "
               "VALUES ('0000BEEF-00010001-panic', ?, 'alarm', 1, 1)", (DEV,))
    db.execute("INSERT INTO events (id, device_id, counter, kind, incident_id, received_at, "
               "attempt, flags, battery_mv, frame) VALUES (7, ?, ?, 'alarm', "
               "'0000BEEF-00010001-panic', 1, 0, 0, 3700, x'00')", (DEV, C))
    db.execute("INSERT INTO receptions (event_id, path, at, duplicate) VALUES (7, 'lora', 1, 0)")
    db.close()
    s = Store(path, create=False)
    try:
        assert s.schema_version == len(MIGRATIONS) >= 4  # v5 (routes) came later
        assert s.find_event(DEV, C, 1) == (7, "0000BEEF-00010001-panic")
        assert s.find_event(DEV, C) == (7, "0000BEEF-00010001-panic")  # current generation
        assert s.receptions(7)[0]["path"] == "lora"
        assert s.db.execute("SELECT key_gen FROM incidents").fetchone()[0] == 1
        assert s.db.execute("PRAGMA foreign_keys").fetchone()[0] == 1
        assert s.db.execute("PRAGMA foreign_key_check").fetchall() == []
        with s.transaction():
            s.insert_event(DEV, C, "alarm", None, 2.0, 0, 0, 3700, b"\x01", key_gen=2)
            with pytest.raises(sqlite3.IntegrityError):
                s.insert_event(DEV, C, "alarm", None, 2.0, 0, 0, 3700, b"\x01", key_gen=2)
        assert s.find_event(DEV, C, 2) != s.find_event(DEV, C, 1)
        # cascades still work on the rebuilt table
        with s.transaction():
            s.db.execute("DELETE FROM events WHERE id = 7")
        assert s.receptions(7) == []
    finally:
        s.close()


def test_rekey_restarts_the_window_a_same_key_rekey_changes_nothing(store):
    p = pl.Pipeline(store, "gw-test", clock=Clock())
    assert p.process(pl.Frame(uplink(frames.HEARTBEAT, 0xFFFF0100), "lora")).status == pl.STORED
    assert _window(store)[0] == 0xFFFF0100
    gen_before = store.registry_generation()
    assert store.rekey(DEV, KEY) == 1  # the key it has: nothing changes
    assert _window(store)[0] == 0xFFFF0100 and store.registry_generation() == gen_before
    assert store.rekey(DEV, NEW_KEY) == 2
    assert _window(store) == (-1, 0)
    assert store.get_device(DEV).key_gen == 2


def test_after_a_rekey_an_old_counter_is_a_new_alarm_and_ids_differ(store):
    """The lost-alarm case: the new key's first alarm has the counter of an alarm stored
    under the old key. Before, find_event matched the old event: the new alarm was re-ACKed
    as a duplicate and never forwarded."""
    clock = Clock()
    p = pl.Pipeline(store, "gw-test", clock=clock)
    old = p.process(pl.Frame(uplink(counter=C), "lora"))
    assert old.status == pl.STORED and old.incident_id == "0000BEEF-00010001-panic"
    for seq in range(2, 100):  # the button went on under the old key
        assert p.process(pl.Frame(uplink(frames.HEARTBEAT, frames.make_counter(1, seq)),
                                  "lora")).status == pl.STORED
    assert store.rekey(DEV, NEW_KEY) == 2  # a CLI, while this pipeline runs
    clock.t += 3600  # long after the old incident's window
    new = p.process(pl.Frame(uplink(counter=C, key=NEW_KEY), "wifi"))
    assert new.status == pl.STORED, new
    assert _ack(new, NEW_KEY).status == frames.STORED
    assert new.incident_id == "0000BEEF-00010001-panic-g2"
    rows = store.outbox_rows()
    assert [r["incident_id"] for r in rows] == [old.incident_id, new.incident_id]
    k_old, k_new = (r["payload"]["idempotency_key"] for r in rows)
    assert k_old != k_new
    assert k_new == dp.idempotency_key("panic", device_id=DEV, counter=C, key_gen=2)
    assert store.find_event(DEV, C, 1) != store.find_event(DEV, C, 2) is not None
    # its own retry is a duplicate of the new event, never forwarded again
    again = p.process(pl.Frame(uplink(counter=C, key=NEW_KEY, attempt=1), "lora"))
    assert again.status == pl.DUPLICATE and again.incident_id == new.incident_id
    assert len(store.outbox_rows()) == 2
    # a repeat press within the window joins the new incident, never the old one
    clock.t += 10
    rep = p.process(pl.Frame(uplink(counter=frames.make_counter(1, 2), key=NEW_KEY), "lora"))
    assert rep.status == pl.STORED and rep.incident_id == new.incident_id
    # old frames fail the new key's tag
    assert p.process(pl.Frame(uplink(counter=C), "lora")).reason == "bad_tag"


def test_a_frame_checked_with_the_old_key_after_a_rekey_is_refused(store):
    """A rekey commits between two batches: the next batch judges with the new key, so no
    frame verified with the cached old key can be stored, nor write its window over the new
    key's (before, the cache was only reloaded every 2 s by the daemon's housekeeping)."""
    p = pl.Pipeline(store, "gw-test", clock=Clock())
    assert p.process(pl.Frame(uplink(frames.HEARTBEAT, 0x00050000), "lora")).status == pl.STORED
    assert store.rekey(DEV, NEW_KEY) == 2
    late = p.process(pl.Frame(uplink(frames.HEARTBEAT, 0x00050001), "lora"))  # old key
    assert late.status == pl.REJECTED and late.reason == "bad_tag"
    assert _window(store) == (-1, 0)
    first = p.process(pl.Frame(uplink(counter=C, key=NEW_KEY), "lora"))
    assert first.status == pl.STORED and _window(store)[0] == C


def test_importing_a_newer_generation_restarts_the_window(tmp_path, store):
    """Gateway B hears the button too; the rekey was made on gateway A and reaches B as an
    export with the next generation: B restarts the window, so the button's restarted
    counter is accepted there as well, under the same incident id as on A."""
    p = pl.Pipeline(store, "gw-b", clock=Clock())
    assert p.process(pl.Frame(uplink(frames.HEARTBEAT, 0xFFFF0100), "lora")).status == pl.STORED
    exp = tmp_path / "from-a.json"
    registry.write_export(exp, [make_record(key=NEW_KEY, key_gen=2)])
    r = CliRunner().invoke(gw_app, ["devices", "import", str(exp), "--db", str(store.path)])
    assert r.exit_code == 0, r.output
    assert _window(store) == (-1, 0) and store.get_device(DEV).key_gen == 2
    out = p.process(pl.Frame(uplink(counter=C, key=NEW_KEY), "lora"))
    assert out.status == pl.STORED and out.incident_id == dp.make_incident_id(DEV, C, "panic", 2)
    # the same key again (a sync) keeps the window
    r = CliRunner().invoke(gw_app, ["devices", "import", str(exp), "--db", str(store.path)])
    assert r.exit_code == 0 and _window(store)[0] == C


def test_a_key_that_comes_back_brings_its_window_back(tmp_path, store):
    """Restarting the window is safe only for a key the device never had: an old key put
    back (an older export imported with --allow-older-key, a removed device registered
    again) gets the window it had, so a recorded frame of it cannot be replayed as new."""
    p = pl.Pipeline(store, "gw-test", clock=Clock())
    recorded = uplink(counter=frames.make_counter(3, 7))  # an alarm someone recorded
    assert p.process(pl.Frame(recorded, "lora")).status == pl.STORED
    for seq in range(8, 90):
        p.process(pl.Frame(uplink(frames.HEARTBEAT, frames.make_counter(3, seq)), "lora"))
    old_window = _window(store)
    assert store.rekey(DEV, NEW_KEY) == 2 and _window(store) == (-1, 0)
    exp = tmp_path / "provision-export.json"
    registry.write_export(exp, [make_record()])  # generation 1, the old key
    r = CliRunner().invoke(gw_app, ["devices", "import", str(exp), "--db", str(store.path),
                                    "--allow-older-key"])
    assert r.exit_code == 0, r.output
    assert store.get_device(DEV).key_gen == 3 and _window(store) == old_window
    outbox = len(store.outbox_rows())
    replay = p.process(pl.Frame(recorded, "lora"))
    assert replay.status in (pl.DUPLICATE, pl.RESYNC) and len(store.outbox_rows()) == outbox
    # and a removed device registered again with the same key
    assert store.remove_device(DEV)
    store.upsert_device(make_record(key_gen=3))
    assert _window(store) == old_window
    assert p.process(pl.Frame(recorded, "lora")).status in (pl.DUPLICATE, pl.RESYNC)
    assert len(store.outbox_rows()) == outbox
    # a key it never had: a fresh window
    assert store.rekey(DEV, THIRD_KEY) == 4 and _window(store) == (-1, 0)


def test_panicgw_devices_rekey_has_no_reset_option_and_says_what_it_did(tmp_path, store):
    kf = tmp_path / "k.key"
    r = CliRunner().invoke(gw_app, ["devices", "rekey", f"{DEV:08X}", "--db", str(store.path),
                                    "--key-file", str(kf), "--reset-counter"])
    assert r.exit_code == 2  # gone: every rekey restarts the window
    r = CliRunner().invoke(gw_app, ["devices", "rekey", f"{DEV:08X}", "--db", str(store.path),
                                    "--key-file", str(kf)])
    assert r.exit_code == 0 and "replay window restarted" in r.output, r.output
    assert registry.read_key_file_full(kf).key_gen == 2
    r = CliRunner().invoke(gw_app, ["devices", "rekey", f"{DEV:08X}", "--db", str(store.path),
                                    "--use-key", str(kf), "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output) == {"device_id": f"{DEV:08X}", "key_gen": 2, "changed": False,
                                    "key_file": None}
    assert store.get_device(DEV).key_gen == 2


# -- against the daemon and a real dispatch receiver -------------------------------------------


def _post(g: GatewayThread, body: bytes) -> tuple[int, bytes]:
    c = http.client.HTTPConnection("127.0.0.1", g.gw.http.port, timeout=10)
    try:
        c.request("POST", "/v1/frames", body=body,
                  headers={"Content-Type": "application/octet-stream"})
        r = c.getresponse()
        return r.status, r.read()
    finally:
        c.close()


def test_alarm_after_rekey_with_an_old_counter_reaches_dispatch_as_a_new_incident(tmp_path):
    disp = DispatchThread()
    cfg = make_config(tmp_path, http={"rate_per_s": 1000.0, "rate_burst": 1000},
                      dispatch={"url": disp.srv.url, "timeout_s": 2.0,
                                "allow_insecure_http": True})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()

    def accepted() -> list[dict]:
        async def get():
            return [r.body for r in disp.srv.accepted() if r.body["event"] == "panic"]
        return disp.call(get())

    try:
        with GatewayThread(cfg) as g:
            status, body = _post(g, uplink(counter=C))
            assert status == 200 and frames.decode_downlink(body, KEY).status == frames.STORED
            assert wait_until(lambda: len(accepted()) == 1)
            # the technician rekeys on the Pi while the daemon runs
            kf = tmp_path / f"{DEV:08X}.key"
            r = CliRunner().invoke(gw_app, ["devices", "rekey", f"{DEV:08X}", "--db",
                                            str(cfg.db_path), "--key-file", str(kf)])
            assert r.exit_code == 0, r.output
            new_key = registry.read_key_file(kf)[1]
            # the button's restarted counter: its first alarm has the old alarm's counter
            fresh = uplink(counter=C, key=new_key)
            assert wait_until(lambda: _post(g, fresh)[0] == 200)
            down = frames.decode_downlink(_post(g, fresh)[1], new_key)
            assert (down.kind, down.counter) == (frames.ACK, C)
            assert wait_until(lambda: len(accepted()) == 2)
            first, second = accepted()
            assert first["incident_id"] == "0000BEEF-00010001-panic"
            assert second["incident_id"] == "0000BEEF-00010001-panic-g2"
            assert second["event"] == "panic" and second["press_count"] == 1
            assert first["idempotency_key"] != second["idempotency_key"]
            def alarms() -> list[tuple[str, str]]:
                return [(r["incident_id"], r["state"]) for r in g.db(
                    Store.outbox_rows) if r["payload"]["event"] == "panic"]
            assert wait_until(lambda: alarms() == [
                ("0000BEEF-00010001-panic", "delivered"),
                ("0000BEEF-00010001-panic-g2", "delivered")]), alarms()
    finally:
        disp.close()


def test_verify_after_a_rekey_never_takes_an_old_frame_with_the_tests_counter(tmp_path):
    """`panictool verify` after a rekey: its TEST has the counter of a frame from before the
    rekey (the counter restarted). Neither the DB nor the status API view may report that
    old frame as this TEST heard."""
    from panictool import verify

    cfg = make_config(tmp_path, http={"rate_per_s": 1000.0, "rate_burst": 1000})
    s = Store(cfg.db_path)
    s.upsert_device(make_record())
    s.close()
    with GatewayThread(cfg) as g:
        assert _post(g, uplink(frames.TEST, C))[0] == 200  # provisioning day's TEST
        s = Store(cfg.db_path, create=False)
        try:
            assert s.rekey(DEV, NEW_KEY) == 2
        finally:
            s.close()
        url = f"http://127.0.0.1:{g.gw.status_port}"
        db_src, api_src = verify.db_source(cfg.db_path), verify.api_source(url)
        assert db_src(DEV, C) is None and api_src(DEV, C) is None
        fresh = uplink(frames.TEST, C, key=NEW_KEY, wifi=True)
        assert wait_until(lambda: _post(g, fresh)[0] == 200)
        for src in (db_src, api_src):
            kind, recs = src(DEV, C)
            assert kind == "test" and [r["duplicate"] for r in recs][0] is False


def test_supervision_messages_after_a_rekey_are_new_ones_too(store):
    """supervision_lost is keyed by the device's highest counter: after a rekey the same
    highest counter must not reuse the old incident or idempotency key (dispatch would take
    the new loss for the old one and drop it)."""
    from panicgw.supervise import runner as sr
    from panicgw.supervise.rule import SupervisionEvent

    def lost(at: float) -> SupervisionEvent:
        return SupervisionEvent("supervision_lost", 381, 1, at, DEV, C, "silent",
                                {"supervision": "lost"})

    assert sr.store_events(store, "gw-1", [lost(1000.0)])
    assert store.rekey(DEV, NEW_KEY) == 2
    assert sr.store_events(store, "gw-1", [lost(2000.0)])
    rows = [r for r in store.outbox_rows() if r["payload"]["event"] == "supervision_lost"]
    assert [r["incident_id"] for r in rows] == ["0000BEEF-00010001-supervision_lost",
                                               "0000BEEF-00010001-supervision_lost-g2"]
    assert rows[0]["payload"]["idempotency_key"] != rows[1]["payload"]["idempotency_key"]
