"""Protocol vectors and pure classes under the MicroPython VM (no CPython modules here)."""

import gc
import json
from binascii import unhexlify

from panicproto import airtime, frames, link, mac, replay
from panicproto.errors import ProtocolError

_HERE = __file__.rsplit("/", 1)[0] if "/" in __file__ else "."


def _v(section):
    """One file of vectors, parsed per test so a 64 KB heap holds it."""
    gc.collect()
    with open(_HERE + "/../vectors/" + section + ".json") as f:
        return json.load(f)


def _b(h):
    return unhexlify(h) if h else b""


_KINDS = {"alarm": frames.ALARM, "cancel": frames.CANCEL, "heartbeat": frames.HEARTBEAT,
          "test": frames.TEST, "tamper": frames.TAMPER, "ack": frames.ACK,
          "resync": frames.RESYNC}


def test_rfc4231_hmac_sha256():
    for case in _v("hmac_rfc4231"):
        assert mac.hmac_sha256(_b(case["key"]), _b(case["data"])) == _b(case["mac"]), case["key"]


def test_uplink_vectors_both_directions():
    for case in _v("uplink"):
        key = _b(case["key"])
        f = case["fields"]
        up = frames.Uplink(_KINDS[f["type"]], f["device_id"], f["counter"], f["attempt"],
                           f["low_battery"], f["tamper"], f["wifi"], f["battery_mv"])
        assert frames.encode_uplink(key, up) == _b(case["hex"]), case["name"]
        assert frames.decode_uplink(_b(case["hex"]), key).fields() == f, case["name"]


def test_downlink_vectors_both_directions():
    for case in _v("downlink"):
        key = _b(case["key"])
        f = case["fields"]
        down = frames.Downlink(_KINDS[f["type"]], f["device_id"], f["counter"], f["status"])
        assert frames.encode_downlink(key, down) == _b(case["hex"]), case["name"]
        assert frames.decode_downlink(_b(case["hex"]), key).fields() == f, case["name"]


def test_link_vectors_both_directions():
    names = {}
    for k in link.TYPE_NAMES:
        names[link.TYPE_NAMES[k]] = k
    for case in _v("link"):
        kind = names[case["kind"]]
        payload = _b(case["payload"])
        wire = _b(case["hex"])
        assert link.encode(kind, case["seq"], payload) == wire, case["name"]
        dec = link.Decoder()
        msgs = dec.feed(wire)
        assert len(msgs) == 1 and msgs[0] == link.Message(kind, case["seq"], payload), case["name"]


def test_invalid_vectors_reasons():
    for case in _v("invalid"):
        key = _b(case["key"]) if case["key"] else None
        raw = _b(case["hex"])
        try:
            if case["decoder"] == "uplink":
                frames.decode_uplink(raw, key)
            elif case["decoder"] == "downlink":
                frames.decode_downlink(raw, key)
            else:
                link.decode(raw)
        except ProtocolError as e:
            assert e.reason == case["reason"], case["name"] + ": " + e.reason
        else:
            raise AssertionError(case["name"] + " accepted")


def test_airtime_vectors():
    for case in _v("airtime"):
        ms = airtime.time_on_air_ms(case["bytes"], case["sf"], case["bw_hz"])
        assert abs(ms - case["ms"]) < 0.01, case


def test_replay_window():
    w = replay.ReplayWindow(64)
    assert w.accept(100) == replay.NEW
    assert w.accept(100) == replay.DUPLICATE
    assert w.accept(98) == replay.NEW
    assert w.check(99) == replay.NEW
    assert w.accept(37) == replay.NEW  # 63 below the highest is the window's last slot
    assert w.check(36) == replay.STALE
    assert w.accept(200) == replay.NEW
    assert w.check(100) == replay.STALE
    assert w.accept(0xFFFFFFFF) == replay.NEW
    assert w.check(0xFFFFFFFF) == replay.DUPLICATE


def test_link_decoder_resyncs_after_garbage():
    dec = link.Decoder()
    wire = link.encode(link.PING, 9, b"abc")
    msgs = dec.feed(b"\x13\x37garbage" + wire + b"\xff\xfe\x00" + wire)
    assert len(msgs) == 2
    assert dec.dropped == 9 + 2
    assert dec.errors


def test_duty_cycle_budget():
    d = airtime.DutyCycle(0.01)
    n = 0
    while d.can_send(0, 329.7):
        d.record(0, 329.7)
        n += 1
    assert n == 109  # 36 s of airtime per hour at 1 %
    assert d.wait_s(0, 329.7) == 3600
    assert d.can_send(3600, 329.7)
