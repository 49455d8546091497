"""Frame encode/decode properties: round trips, and nothing but ProtocolError escapes."""

import hashlib
import hmac

import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicproto import frames, mac
from panicproto.errors import ProtocolError

KEY = bytes(range(16))
u32 = st.integers(0, 0xFFFFFFFF)
uplinks = st.builds(
    frames.Uplink,
    kind=st.sampled_from(frames.UPLINK_TYPES),
    device_id=u32,
    counter=u32,
    attempt=st.integers(0, 15),
    low_battery=st.booleans(),
    tamper=st.booleans(),
    wifi=st.booleans(),
    battery_mv=st.integers(0, 255).map(lambda s: s * 20),
)
downlinks = st.one_of(
    st.builds(frames.Downlink, kind=st.just(frames.ACK), device_id=u32, counter=u32,
              status=st.sampled_from([frames.STORED, frames.DELIVERED])),
    st.builds(frames.Downlink, kind=st.just(frames.RESYNC), device_id=u32, counter=u32,
              status=st.just(0)),
)
keys = st.binary(min_size=16, max_size=16)


def test_sizes_meet_the_airtime_budget() -> None:
    assert frames.UPLINK_LEN <= 19 and frames.DOWNLINK_LEN <= 18
    assert frames.TAG_LEN * 8 >= 64


@given(uplinks, keys)
def test_uplink_round_trip(up: frames.Uplink, key: bytes) -> None:
    raw = frames.encode_uplink(key, up)
    assert len(raw) == frames.UPLINK_LEN
    assert frames.decode_uplink(raw, key) == up
    assert frames.peek_device_id(raw) == up.device_id


@given(downlinks, keys)
def test_downlink_round_trip(down: frames.Downlink, key: bytes) -> None:
    raw = frames.encode_downlink(key, down)
    assert len(raw) == frames.DOWNLINK_LEN
    assert frames.decode_downlink(raw, key) == down


@given(uplinks, st.integers(0, 18 * 8 - 1))
def test_any_bit_flip_is_rejected(up: frames.Uplink, bit: int) -> None:
    raw = bytearray(frames.encode_uplink(KEY, up))
    raw[bit // 8] ^= 1 << (bit % 8)
    with pytest.raises(ProtocolError):
        frames.decode_uplink(bytes(raw), KEY)


@given(st.binary(max_size=64), st.one_of(st.none(), keys))
def test_random_bytes_only_raise_protocol_error(data: bytes, key: bytes | None) -> None:
    for decode in (lambda: frames.decode_uplink(data, key),
                   lambda: frames.decode_downlink(data, key or KEY)):
        try:
            decode()
        except ProtocolError as e:
            assert e.reason
        # a random 19-byte string can only pass without a key


@given(uplinks, st.data())
def test_mutated_frames_only_raise_protocol_error(up: frames.Uplink, data: st.DataObject) -> None:
    raw = bytearray(frames.encode_uplink(KEY, up))
    ops = data.draw(st.lists(st.tuples(st.sampled_from("xdi"), st.integers(0, 30),
                                       st.integers(0, 255)), max_size=4))
    for op, pos, val in ops:
        pos = min(pos, len(raw))
        if op == "x" and pos < len(raw):
            raw[pos] ^= val or 1
        elif op == "d" and pos < len(raw):
            del raw[pos]
        elif op == "i":
            raw.insert(pos, val)
    try:
        assert frames.decode_uplink(bytes(raw), KEY) == up  # only an unchanged frame passes
    except ProtocolError:
        pass


def test_tag_direction_separates_uplink_and_downlink() -> None:
    body = bytes(10)
    assert frames.compute_tag(KEY, frames.DIR_UP, body) != frames.compute_tag(
        KEY, frames.DIR_DOWN, body)


def test_wrong_key_length_is_an_error() -> None:
    with pytest.raises(ProtocolError) as e:
        frames.compute_tag(b"short", 0, b"")
    assert e.value.reason == "bad_key"


def test_battery_is_clamped_and_rounded() -> None:
    up = frames.Uplink(frames.HEARTBEAT, 1, 1, battery_mv=9999)
    assert frames.decode_uplink(frames.encode_uplink(KEY, up)).battery_mv == 5100
    up.battery_mv = 3311
    assert frames.decode_uplink(frames.encode_uplink(KEY, up)).battery_mv == 3320


def test_attempt_saturates_at_15() -> None:
    up = frames.Uplink(frames.ALARM, 1, 1, attempt=40)
    assert frames.decode_uplink(frames.encode_uplink(KEY, up)).attempt == 15


def test_counter_split() -> None:
    c = frames.make_counter(0xABCD, 0x1234)
    assert c == 0xABCD1234 and frames.split_counter(c) == (0xABCD, 0x1234)


@given(st.binary(max_size=200), st.binary(max_size=300))
def test_hmac_matches_stdlib(key: bytes, data: bytes) -> None:
    assert mac.hmac_sha256(key, data) == hmac.new(key, data, hashlib.sha256).digest()


@given(st.binary(max_size=16), st.binary(max_size=16))
def test_equal_matches_eq(a: bytes, b: bytes) -> None:
    assert mac.equal(a, b) == (a == b)
