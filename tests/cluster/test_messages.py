"""Cluster message formats and the codec: tags, topics, replays, the sealed registry."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from panicgw.cluster.crypto import GroupKeys
from panicgw.cluster.messages import (
    BAD_MAC,
    MALFORMED,
    REPLAY,
    TOPIC_MISMATCH,
    UNDECRYPTABLE,
    Claim,
    Codec,
    Digest,
    Gone,
    Heard,
    Rejected,
    RxReport,
    Status,
    Topics,
    UplinkKey,
)
from panicgw.cluster.sequence import SeqSource

from .conftest import GROUP, SECRET, record

KEYS = GroupKeys(SECRET, GROUP)


def rx(gw: str = "gw-a", **kw: object) -> RxReport:
    base = {"device_id": 0x1234ABCD, "key_gen": 1, "counter": 0x00030001, "attempt": 0,
            "kind": "alarm", "path": "lora", "rssi": -97.456, "snr": 6.251,
            "at": 1_714_560_000.5, "downlink": True, "incident": "I-1"}
    base.update(kw)
    return RxReport(gw, **base)  # type: ignore[arg-type]


def test_every_kind_round_trips() -> None:
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    key = UplinkKey(0x1234ABCD, 2, 7, 1)
    msgs = [rx(), Claim("gw-a", key, 1.5), Status("gw-a", 42, 2.0, True, {"queue": 0}),
            Gone("gw-a", 42, "shutdown"),
            Digest("gw-a", 3.0, {0x1234ABCD: Heard(2, 7, 2.5, -90.0, 5.5)})]
    for m in msgs:
        out = a.encode(m)
        assert out.topic.startswith(f"panic/cluster/{GROUP}/")
        got = b.decode(out.topic, out.payload)
        assert got.msg == m and got.sender == "gw-a"
    assert rx().rssi == -97.46 and rx().snr == 6.25  # rounded once, at the source
    assert [a.encode(m).retain for m in msgs] == [False, False, True, True, True]


def test_registry_entry_is_sealed_and_opens_at_the_peer() -> None:
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    rec = record()
    out = a.encode(a.registry_entry(rec, rec.device_id, 3))
    assert rec.key.hex().encode() not in out.payload
    assert base64.b64encode(rec.key) not in out.payload
    assert b"Merdeka" not in out.payload  # the site (an address) is sealed too
    got = b.decode(out.topic, out.payload).msg
    assert got.gen == 3 and got.op == "upsert" and got.origin == "gw-a"
    assert got.record is not None and got.record.key == rec.key
    assert "key" not in repr(got).lower().replace("key_gen", "")
    gone = b.decode(*a.encode(a.registry_entry(None, rec.device_id, 4))[:2]).msg
    assert gone.op == "remove" and gone.record is None


def test_wrong_secret_forgery_and_tampering_are_rejected() -> None:
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    outsider = Codec(GroupKeys(b"\x01" * 32, GROUP), "gw-a")
    out = outsider.encode(rx())
    with pytest.raises(Rejected) as e:
        b.decode(out.topic, out.payload)
    assert e.value.reason == BAD_MAC
    good = a.encode(rx())
    line, _, tag = good.payload.rpartition(b"\n")
    for payload in (line, line.replace(b"-97.46", b"-20.00") + b"\n" + tag,
                    b"{}\n" + base64.b64encode(b"x" * 32), b"\xff\n!!"):
        with pytest.raises(Rejected) as e:
            b.decode(good.topic, payload)
        assert e.value.reason == BAD_MAC
    # moved to another gateway's topic: the tag covers the topic
    with pytest.raises(Rejected) as e:
        b.decode(good.topic.replace("gw-a", "gw-c"), good.payload)
    assert e.value.reason == BAD_MAC
    assert b.rejected[BAD_MAC] == 6 and b.accepted == 0


def test_replays_are_rejected_per_sender_and_topic() -> None:
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    first, second = a.encode(rx(counter=1)), a.encode(rx(counter=2))
    status = a.encode(Status("gw-a", 1, 1.0))
    b.decode(*first[:2])
    b.decode(*status[:2])  # another topic, its own sequence
    b.decode(*second[:2])
    for old in (first, second):
        with pytest.raises(Rejected) as e:
            b.decode(*old[:2])
        assert e.value.reason == REPLAY
    assert b.rejected[REPLAY] == 2
    # registry entries are ordered by generation instead: a verbatim copy is fine
    reg = a.encode(a.registry_entry(record(), 0x1234ABCD, 1))
    b.decode(*reg[:2])
    b.decode(*reg[:2])


def test_a_sender_cannot_speak_for_another() -> None:
    """Inside the group a gateway could sign anything; the codec still refuses a message
    whose sender is not the gateway its topic names (the ACL refuses it too)."""
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    t = Topics(GROUP)
    line = json.dumps({"v": 1, "kind": "rx", "from": "gw-a", "seq": 5, "t": 1.0,
                       "body": {}}).encode()
    topic = t.of("rx", "gw-c")
    payload = line + b"\n" + base64.b64encode(KEYS.sign(b"panic-cluster/1\0" +
                                                        topic.encode() + b"\0" + line))
    with pytest.raises(Rejected) as e:
        b.decode(topic, payload)
    assert e.value.reason == TOPIC_MISMATCH
    reg = a.encode(a.registry_entry(record(), 0x1234ABCD, 1))
    other = t.registry(0x0BADF00D)
    resigned = _resign(reg.payload, other)
    with pytest.raises(Rejected) as e:
        b.decode(other, resigned)
    assert e.value.reason == TOPIC_MISMATCH


def _resign(payload: bytes, topic: str) -> bytes:
    line = payload.rpartition(b"\n")[0]
    return line + b"\n" + base64.b64encode(KEYS.sign(b"panic-cluster/1\0" + topic.encode() +
                                                     b"\0" + line))


def test_sealed_record_bound_to_its_topic_and_origin() -> None:
    a, b = Codec(KEYS, "gw-a"), Codec(KEYS, "gw-b")
    out = a.encode(a.registry_entry(record(), 0x1234ABCD, 1))
    env = json.loads(out.payload.rpartition(b"\n")[0])
    env["from"] = "gw-c"  # claims another origin: the AES-GCM associated data disagrees
    line = json.dumps(env, separators=(",", ":")).encode()
    payload = line + b"\n" + base64.b64encode(KEYS.sign(b"panic-cluster/1\0" +
                                                        out.topic.encode() + b"\0" + line))
    with pytest.raises(Rejected) as e:
        b.decode(out.topic, payload)
    assert e.value.reason == UNDECRYPTABLE


def test_malformed_bodies_are_counted() -> None:
    b = Codec(KEYS, "gw-b")
    t = Topics(GROUP)
    for kind, body in (("rx", {"dev": "XYZ"}), ("digest", {"devices": 3}),
                       ("status", {"conn": -1})):
        line = json.dumps({"v": 1, "kind": kind, "from": "gw-a", "seq": 9, "t": 1.0,
                           "body": body}).encode()
        topic = t.of(kind, "gw-a")
        with pytest.raises(Rejected) as e:
            b.decode(topic, line + b"\n" + base64.b64encode(
                KEYS.sign(b"panic-cluster/1\0" + topic.encode() + b"\0" + line)))
        assert e.value.reason == MALFORMED
    with pytest.raises(Rejected):
        b.decode("panic/cluster/other/rx/gw-a", b"x\ny")
    assert b.rejected[MALFORMED] == 4


def test_sequence_never_repeats_across_restarts_even_with_a_stale_clock(tmp_path: Path
                                                                       ) -> None:
    f = tmp_path / "cluster-seq"
    first = SeqSource(f, clock=lambda: 1_714_560_000.0)
    a = [first.next() for _ in range(3000)]  # across a few start values
    assert a == sorted(a) and len(set(a)) == 3000
    # crashed, restarted on a Pi whose clock went back to 1970 before NTP: still above
    again = SeqSource(f, clock=lambda: 100.0)
    b = again.next()
    assert b > a[-1]
    again.next()
    again.close()  # a clean stop keeps only what was used
    assert SeqSource(f, clock=lambda: 100.0).next() > b
    # restarted within the same second, without a state file (tests): still above
    assert SeqSource(clock=lambda: 1_714_560_000.25).next() > a[-1]
    # the state file lost: the wall clock still puts it above yesterday's
    assert SeqSource(tmp_path / "other", clock=lambda: 1_714_646_400.0).next() > a[-1]
    assert a[-1] < 2**53


def test_sequence_reserves_ahead_when_it_outruns_the_clock(tmp_path: Path) -> None:
    from panicgw.cluster import sequence

    f = tmp_path / "cluster-seq"
    s = SeqSource(f, clock=lambda: 1_000.0)
    reserved = int(f.read_text())
    assert reserved == s.start + sequence.RESERVE
    s.start = reserved  # as if an hour of numbers were used up within a second
    s._n = (1 << sequence.BITS) - 1
    n = s.next()
    assert int(f.read_text()) > reserved
    assert SeqSource(f, clock=lambda: 1_000.0).next() > n
