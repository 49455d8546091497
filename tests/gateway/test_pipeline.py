"""Pipeline: every rejection is a counted reason, good frames still pass, dedupe, RESYNC,
incident grouping, and ACKs only for what is durably stored."""

from __future__ import annotations

import pytest
from gwkit import DEV, KEY, make_record, uplink
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from panicgw import pipeline as pl
from panicgw.store import PRIO_ALARM, Store
from panicproto import frames


@pytest.fixture
def store(tmp_path):
    s = Store(tmp_path / "gw.db")
    s.upsert_device(make_record())
    yield s
    s.close()


class Clock:
    def __init__(self, t: float = 1_700_000_000.0):
        self.t = t

    def __call__(self) -> float:
        return self.t


def _pipe(store, clock=None, **kw) -> pl.Pipeline:
    return pl.Pipeline(store, "gw-test", clock=clock or Clock(), **kw)


def _ack(out: pl.Outcome, key: bytes = KEY) -> frames.Downlink:
    assert out.downlink is not None
    return frames.decode_downlink(out.downlink, key)


def test_alarm_stored_acked_and_in_outbox(store):
    p = _pipe(store)
    out = p.process(pl.Frame(uplink(counter=0x00010001), "lora", -97, 7.5))
    assert out.status == pl.STORED
    down = _ack(out)
    assert (down.kind, down.counter, down.status) == (frames.ACK, 0x00010001, frames.STORED)
    rows = store.outbox_rows()
    assert len(rows) == 1 and rows[0]["priority"] == PRIO_ALARM
    body = rows[0]["payload"]
    assert body["incident_id"] == out.incident_id == "0000BEEF-00010001-panic"
    assert body["site"]["lat"] == pytest.approx(-6.9217)
    assert body["paths"][0]["rssi"] == -97


def test_each_rejection_is_counted_and_good_frames_pass(store):
    p = _pipe(store)
    good = uplink(counter=5)
    bad_tag = bytearray(uplink(counter=6))
    bad_tag[-1] ^= 1
    unknown = uplink(counter=7, device_id=0xDEAD)
    wrong_key = uplink(counter=8, key=bytes(16))
    batch = [
        pl.Frame(b"\x11\x00", "wifi"),                # short
        pl.Frame(good + b"\x00", "wifi"),             # long
        pl.Frame(b"\x21" + good[1:], "lora"),         # bad version
        pl.Frame(b"\x1f" + good[1:], "lora"),         # bad type
        pl.Frame(bytes(bad_tag), "lora"),             # bad tag
        pl.Frame(wrong_key, "lora"),                  # bad tag (wrong key)
        pl.Frame(unknown, "lora"),                    # unknown device
        pl.Frame(good, "lora"),                       # good, in the middle of the garbage
    ]
    outs = p.process_batch(batch)
    assert [o.reason for o in outs] == ["short", "long", "bad_version", "bad_type", "bad_tag",
                                        "bad_tag", "unknown_device", None]
    assert outs[-1].status == pl.STORED and outs[-1].downlink
    assert all(o.downlink is None for o in outs[:-1])
    assert p.rejections.counts == {"short": 1, "long": 1, "bad_version": 1, "bad_type": 1,
                                   "bad_tag": 2, "unknown_device": 1}
    assert store.rejections() == p.rejections.counts  # persisted with the batch


def test_duplicates_reacked_path_recorded_never_forwarded_twice(store):
    p = _pipe(store)
    a = p.process(pl.Frame(uplink(counter=10, attempt=0), "lora", -110, -3.0))
    b = p.process(pl.Frame(uplink(counter=10, attempt=1, wifi=True), "wifi"))
    c = p.process(pl.Frame(uplink(counter=10, attempt=2), "lora", -100, 2.0))
    assert [o.status for o in (a, b, c)] == [pl.STORED, pl.DUPLICATE, pl.DUPLICATE]
    assert _ack(b).counter == 10 and _ack(c).status == frames.STORED
    assert b.incident_id == a.incident_id
    assert len(store.outbox_rows()) == 1
    ev = store.find_event(DEV, 10)
    paths = store.receptions(ev[0])
    assert [(r["path"], r["rssi"], r["duplicate"]) for r in paths] == [
        ("lora", -110, False), ("wifi", None, True), ("lora", -100, True)]


def test_out_of_order_within_window_accepted(store):
    p = _pipe(store, incident_window_s=0)
    statuses = [p.process(pl.Frame(uplink(kind=frames.TEST, counter=c), "lora")).status
                for c in (20, 18, 19, 18)]
    assert statuses == [pl.STORED, pl.STORED, pl.STORED, pl.DUPLICATE]


def test_stale_counter_gets_signed_resync(store):
    p = _pipe(store)
    p.process(pl.Frame(uplink(kind=frames.HEARTBEAT, counter=0x00050100), "lora"))
    out = p.process(pl.Frame(uplink(counter=0x00020003), "lora"))  # re-flashed: old epoch
    assert out.status == pl.RESYNC and out.reason == "replay"
    down = _ack(out)
    assert down.kind == frames.RESYNC and down.counter == 0x00060000
    assert p.rejections.counts["replay"] == 1
    # The button resends with the new counter: stored.
    assert p.process(pl.Frame(uplink(counter=0x00060000), "lora")).status == pl.STORED


def test_replay_state_survives_restart(store):
    p = _pipe(store)
    frame = uplink(counter=0x00030001)
    assert p.process(pl.Frame(frame, "lora")).status == pl.STORED
    p2 = _pipe(store)  # a restarted gateway
    again = p2.process(pl.Frame(frame, "lora"))
    assert again.status == pl.DUPLICATE and _ack(again).counter == 0x00030001
    assert len(store.outbox_rows()) == 1


def test_repeat_presses_within_window_update_one_incident(store):
    clock = Clock()
    p = _pipe(store, clock, incident_window_s=300)
    first = p.process(pl.Frame(uplink(counter=1), "lora"))
    clock.t += 60
    second = p.process(pl.Frame(uplink(counter=2), "lora"))
    clock.t += 1000
    third = p.process(pl.Frame(uplink(counter=3), "lora"))
    assert first.incident_id == second.incident_id != third.incident_id
    rows = store.outbox_rows()
    assert [r["payload"]["press_count"] for r in rows] == [1, 2, 1]
    assert store.incident(first.incident_id)["press_count"] == 2
    # A heartbeat between presses is no incident and no dispatch message.
    hb = p.process(pl.Frame(uplink(kind=frames.HEARTBEAT, counter=4), "lora"))
    assert hb.status == pl.STORED and hb.incident_id is None and len(store.outbox_rows()) == 3


def test_failed_commit_acks_nothing_and_rolls_back_window(store, monkeypatch):
    p = _pipe(store)

    def boom(*a, **k):
        raise RuntimeError("disk full")

    monkeypatch.setattr(store, "enqueue", boom)
    out = p.process(pl.Frame(uplink(counter=50), "lora"))
    assert out.status == pl.REJECTED and out.downlink is None
    monkeypatch.undo()
    out = p.process(pl.Frame(uplink(counter=50), "lora"))
    assert out.status == pl.STORED and len(store.outbox_rows()) == 1


def test_registry_change_reloaded(store, tmp_path):
    p = _pipe(store)
    other = make_record(0x77, bytes(range(1, 17)))
    assert p.process(pl.Frame(uplink(counter=1, device_id=0x77, key=other.key), "lora")
                     ).reason == "unknown_device"
    store.upsert_device(other)
    assert p.maybe_reload()
    assert p.process(pl.Frame(uplink(counter=1, device_id=0x77, key=other.key), "lora")
                     ).status == pl.STORED


@settings(max_examples=300, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=40))
def test_random_bytes_never_crash_never_acked(store, data):
    p = _pipe(store)
    out = p.process(pl.Frame(data, "wifi"))
    assert out.status == pl.REJECTED and out.downlink is None and out.reason


OTHER = 0x0000CAFE
OTHER_KEY = bytes(range(16, 32))


def test_payload_builder_failure_degrades_one_frame_not_the_batch(store):
    """A builder that raises for one device: that alarm is still stored, ACKed and queued with
    a body marked DEGRADED (valid against the dispatch schema); the rest of the batch commits
    normally."""
    from panicgw.forward.contract import schema_errors
    from panicgw.forward.payload import build_payload

    store.upsert_device(make_record(OTHER, OTHER_KEY))

    def builder(**kw):
        if kw["device"]["id"] == OTHER:
            raise KeyError("site_code")  # a bug tied to this device's registry data
        return build_payload(**kw)

    p = _pipe(store, payload_builder=builder)
    outs = p.process_batch([
        pl.Frame(uplink(counter=0x00010001), "lora", -97, 7.5),
        pl.Frame(uplink(counter=0x00010001, device_id=OTHER, key=OTHER_KEY), "wifi"),
        pl.Frame(uplink(frames.HEARTBEAT, 0x00010002), "lora"),
        pl.Frame(uplink(frames.TEST, 0x00010003), "lora"),
    ])
    assert [o.status for o in outs] == [pl.STORED] * 4
    assert _ack(outs[1], OTHER_KEY).status == frames.STORED  # acknowledged: it is on disk
    assert all(o.downlink is not None for o in outs)
    rows = {r["incident_id"]: r for r in store.outbox_rows()}
    assert set(rows) == {"0000BEEF-00010001-panic", "0000CAFE-00010001-panic",
                         "0000BEEF-00010003-test"}
    degraded = rows["0000CAFE-00010001-panic"]["payload"]
    assert degraded["detail"].startswith("DEGRADED:") and "KeyError" in degraded["detail"]
    assert degraded["device"]["id"] == "0000CAFE" and degraded["event"] == "panic"
    assert degraded["site"]["name"] == "Toko Sinar"  # what could be kept was kept
    assert degraded["contact_id"]["code"] == 122 and rows[
        "0000CAFE-00010001-panic"]["priority"] == PRIO_ALARM
    assert schema_errors(degraded) == []
    assert rows["0000BEEF-00010001-panic"]["payload"]["detail"] == ""
    assert store.find_event(OTHER, 0x00010001) is not None
    assert p.stats["payload_degraded"] == 1 and p.stats["stored"] == 4


def test_bad_site_field_replaced_and_named(store):
    """Registry data the schema refuses (latitude out of range): the builder's own error, and
    the degraded body names the replaced field."""
    store.db.execute("UPDATE sites SET lat = 123.0")
    p = _pipe(store)
    out = p.process(pl.Frame(uplink(counter=0x00010001), "lora"))
    assert out.status == pl.STORED and out.downlink is not None
    [row] = store.outbox_rows()
    body = row["payload"]
    assert "site.lat" in body["detail"] and "bad_site_lat" in body["detail"]
    assert body["site"]["lat"] == 0.0 and body["site"]["lon"] == 107.6071
    assert body["device"]["label"] == "kasir"  # step 2 kept the device data


def test_no_payload_at_all_rejects_only_that_frame(store):
    """A gateway-wide fault (here an invalid gateway id) that even the minimal body trips:
    only the event frame is rolled back and rejected with payload_error (counted, not
    ACKed, its counter still unused); the heartbeat in the same batch commits."""
    p = pl.Pipeline(store, "g" * 65, clock=Clock())
    outs = p.process_batch([
        pl.Frame(uplink(frames.HEARTBEAT, 0x00010001), "lora"),
        pl.Frame(uplink(counter=0x00010002), "lora"),
    ])
    assert outs[0].status == pl.STORED and outs[0].downlink is not None
    assert (outs[1].status, outs[1].reason, outs[1].downlink) == (
        pl.REJECTED, pl.PAYLOAD_ERROR, None)
    assert store.find_event(DEV, 0x00010001) is not None
    assert store.find_event(DEV, 0x00010002) is None and store.outbox_rows() == []
    assert store.db.execute("SELECT count(*) FROM incidents").fetchone()[0] == 0
    assert store.rejections() == {pl.PAYLOAD_ERROR: 1}
    assert p.devices[DEV].window.highest == 0x00010001  # the alarm's retry is new again


def test_dense_routine_frames_linger_into_one_batch_and_an_alarm_cuts_in(tmp_path):
    """A sender that waits for each ACK never lingers. Heartbeats arriving faster than one
    commit each wait to share a commit (here until the batch is full); an alarm arriving
    meanwhile is committed first, in a batch of its own, and the heartbeat that was waiting
    does not wait a second time."""
    import asyncio

    s = Store(tmp_path / "gw.db", check_same_thread=False)
    s.upsert_device(make_record())
    proc = pl.Processor(_pipe(s, clock=__import__("time").time), batch_max=4, linger_s=30.0)

    def hb(n: int) -> pl.Frame:
        return pl.Frame(uplink(frames.HEARTBEAT, counter=0x00010000 + n), "wifi")

    async def scenario() -> tuple[list[str], list[int]]:
        task = asyncio.create_task(proc.run())
        for n in (1, 2):  # one at a time, each after the previous ACK: no 30 s wait
            out = await asyncio.wait_for(proc.submit(hb(n)), 10)
            assert out.status == pl.STORED
        assert proc.batches == 2
        done: list[str] = []
        waiting = proc.submit_nowait(hb(3))
        second = proc.submit_nowait(hb(4))  # two queued at once: dense, hb3 lingers
        waiting.add_done_callback(lambda _f: done.append("hb3"))
        await asyncio.sleep(0.05)
        assert not waiting.done() and proc.batches == 2
        alarm = await proc.submit(pl.Frame(uplink(frames.ALARM, counter=0x00010020), "wifi"))
        done.append("alarm")
        assert alarm.status == pl.STORED and alarm.outbox is not None
        sizes = [proc.largest_batch]
        outs = await asyncio.wait_for(asyncio.gather(waiting, second), 10)  # no second wait
        assert all(o.status == pl.STORED for o in outs)
        sizes.append(proc.largest_batch)
        rest = [proc.submit_nowait(hb(n)) for n in (5, 6, 7, 8)]  # lingers until batch full
        outs = await asyncio.wait_for(asyncio.gather(*rest), 10)
        assert all(o.status == pl.STORED for o in outs)
        sizes.append(proc.largest_batch)
        task.cancel()
        return done, sizes

    done, sizes = asyncio.run(scenario())
    proc.close()
    s.close()
    assert done == ["alarm", "hb3"]
    assert sizes == [1, 2, 4]  # the alarm alone; hb3+hb4; then hb5..hb8 in one commit
