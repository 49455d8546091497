"""Link size limits under the MicroPython VM (the decoder the bridge firmware runs): a payload
of MAX_PAYLOAD passes, one byte more is counted oversize even when its COBS is short, and the
next frame survives. The full property test is tests/protocol/test_link_limits.py."""

from panicproto import link
from panicproto.crc import crc16


def _wire(kind, seq, payload):
    frame = bytes((kind, seq)) + payload
    c = crc16(frame)
    return b"\x00" + link.cobs_encode(frame + bytes((c >> 8, c & 0xFF))) + b"\x00"


def test_limits_are_derived():
    assert link.MAX_PAYLOAD == 512 and link.MAX_ENCODED == 519 and link.MAX_WIRE == 521


def test_payload_at_and_one_past_the_limit():
    for size, zeros in ((512, False), (512, True), (513, True), (513, False)):
        payload = bytes(size) if zeros else b"\x01" * size
        dec = link.Decoder()
        out = dec.feed(_wire(link.PING, 5, payload) + link.encode(link.PING, 6, b"ok"))
        assert out[-1].payload == b"ok"
        if size <= link.MAX_PAYLOAD:
            assert len(out) == 2 and out[0].payload == payload
            assert len(link.encode(link.PONG, 5, out[0].payload)) <= link.MAX_WIRE
        else:
            assert len(out) == 1 and dec.errors == {"oversize": 1}
