"""Serial link: COBS against an independent implementation, CRC, stream resynchronisation."""

import cobs.cobs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from panicproto import link
from panicproto.errors import ProtocolError

messages = st.builds(link.Message, kind=st.sampled_from(sorted(link.TYPE_NAMES)),
                     seq=st.integers(0, 255), payload=st.binary(max_size=link.MAX_PAYLOAD))


def test_crc_check_value() -> None:
    assert link.crc16(b"123456789") == 0x29B1


@given(st.binary(max_size=1200))
def test_cobs_matches_reference_implementation(data: bytes) -> None:
    enc = link.cobs_encode(data)
    assert enc == cobs.cobs.encode(data)
    assert link.cobs_decode(enc) == data


@given(st.binary(max_size=600))
def test_cobs_decode_random_input(data: bytes) -> None:
    try:
        out = link.cobs_decode(data)
    except ProtocolError as e:
        assert e.reason == "bad_cobs"
        with pytest.raises(cobs.cobs.DecodeError):
            cobs.cobs.decode(data)
    else:
        assert out == cobs.cobs.decode(data)


@given(st.lists(messages, max_size=8), st.lists(st.binary(max_size=40), max_size=8),
       st.integers(1, 64))
def test_stream_with_garbage_keeps_every_clean_message(msgs, garbage, chunk) -> None:
    """Garbage between frames costs nothing but the garbage; chunking does not matter."""
    stream = bytearray()
    for i, m in enumerate(msgs):
        if i < len(garbage):
            stream += garbage[i]
        stream += link.encode(m.kind, m.seq, m.payload)
    dec = link.Decoder()
    out = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(bytes(stream[i:i + chunk]))
    # Garbage could by chance form a valid frame of its own; it can never cost a real one,
    # so the real messages are an in-order subsequence of what came out.
    it = iter(out)
    assert all(any(m == o for o in it) for m in msgs)
    assert dec.pending == 0


@given(st.binary(max_size=3000))
def test_decoder_never_raises_and_accounts_for_bytes(data: bytes) -> None:
    dec = link.Decoder()
    msgs = dec.feed(data)
    assert dec.frames == len(msgs)
    assert dec.dropped + dec.pending <= len(data)


def test_oversize_frame_is_dropped_and_next_one_survives() -> None:
    dec = link.Decoder()
    good = link.encode(link.PING, 1, b"x")
    out = dec.feed(b"\x01" * (link.MAX_ENCODED + 50) + good)
    assert out == [link.Message(link.PING, 1, b"x")]
    assert dec.errors == {"oversize": 1}
    assert dec.dropped == link.MAX_ENCODED + 50


def test_rx_payload_round_trip_and_clamping() -> None:
    frame, rssi, snr = link.parse_rx(link.rx_payload(b"\x11" * 19, -120, -9.75))
    assert (frame, rssi, snr) == (b"\x11" * 19, -120, -9.75)
    assert link.parse_rx(link.rx_payload(b"a", 0, 99.0))[2] == 31.75
    with pytest.raises(ProtocolError) as e:
        link.parse_rx(b"\x00\x01\x02")
    assert e.value.reason == "truncated"


def test_encode_rejects_bad_type_and_oversize() -> None:
    with pytest.raises(ProtocolError):
        link.encode(99, 0, b"")
    with pytest.raises(ProtocolError):
        link.encode(link.LOG, 0, bytes(link.MAX_PAYLOAD + 1))


@given(st.binary(max_size=700))
def test_single_frame_and_rx_decoders_only_raise_protocol_error(data: bytes) -> None:
    for fn in (link.decode, link.parse_rx):
        try:
            fn(data)
        except ProtocolError as e:
            assert e.reason
