"""Every link message type at and past every size limit, both ends of the serial link.

Limits (docs/protocol.md, "Serial link"): a payload is 0-512 bytes (``MAX_PAYLOAD``) for every
type, at most 519 COBS bytes (``MAX_ENCODED``); an RX payload is 3 + 1..255 bytes (the radio
frame at most ``MAX_RADIO``). Frames are built by hand here (``raw_wire``), bypassing
``link.encode``'s own check, as a broken or hostile peer would send them.

- the decoder both ends run (``link.Decoder``): a frame within the limits comes out, one
  past them is counted ``oversize``, and the next frame is never lost; what comes out can
  always be encoded again (the old 513-byte PING whose PONG raised);
- the bridge firmware (``panicbridge.bridge.Bridge`` with a fake port and radio): whatever
  the host sends at or past the limits, it never raises and answers the next PING; its own
  STATUS always fits the link, even with every counter at its largest.
The gateway end is tests/gateway/test_serial_link.py (a real gateway on a pty).
"""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st
from linkkit import KINDS, TYPE_LIMIT, payloads, raw_wire

from panicbridge import config
from panicbridge.bridge import Bridge
from panicproto import link


def test_documented_numbers_are_the_code() -> None:
    assert link.MAX_PAYLOAD == 512
    assert link.MAX_FRAME == 516
    assert link.MAX_ENCODED == 519 == len(link.cobs_encode(b"\x01" * link.MAX_FRAME))
    assert link.MAX_WIRE == 521 == len(link.encode(link.LOG, 1, b"\x01" * link.MAX_PAYLOAD))


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS + [0, 99]), seq=st.integers(0, 255), payload=payloads,
       chunk=st.integers(1, 600))
def test_decoder_at_and_past_every_limit(kind: int, seq: int, payload: bytes,
                                         chunk: int) -> None:
    stream = raw_wire(kind, seq, payload) + link.encode(link.PING, 7, b"next")
    dec = link.Decoder()
    out = []
    for i in range(0, len(stream), chunk):
        out += dec.feed(stream[i:i + chunk])
    assert out[-1] == link.Message(link.PING, 7, b"next")  # the next frame always survives
    got = out[:-1]
    if len(payload) > link.MAX_PAYLOAD:  # checked first, whatever the type
        assert got == [] and dec.errors == {"oversize": 1}
    elif kind not in link.TYPE_NAMES:
        assert got == [] and dec.errors == {"bad_type": 1}
    else:
        assert got == [link.Message(kind, seq, payload)] and not dec.errors
        assert link.encode(kind, seq, payload)  # anything accepted can be sent back
    if kind == link.RX and got:
        try:
            frame, _, _ = link.parse_rx(payload)
            assert 1 <= len(frame) <= link.MAX_RADIO and len(payload) <= TYPE_LIMIT[link.RX]
        except link.ProtocolError as e:
            assert e.reason in ("truncated", "oversize")
            assert len(payload) < 4 or len(payload) > TYPE_LIMIT[link.RX]


# -- the bridge firmware ---------------------------------------------------------------------


class FakeSerial:
    def __init__(self) -> None:
        self.connected = True
        self.inbox = b""
        self.out = b""

    @property
    def in_waiting(self) -> int:
        return len(self.inbox)

    def read(self, n: int) -> bytes:
        d, self.inbox = self.inbox[:n], self.inbox[n:]
        return d

    def write(self, b: bytes) -> int:
        self.out += b
        return len(b)


class FakeRadio:
    def __init__(self) -> None:
        self.sent: list[bytes] = []
        self.last_rssi, self.last_snr, self.rssi, self.crc_error_count = -70, 6.25, -118, 0
        self.frequency_mhz = self.spreading_factor = self.signal_bandwidth = 0
        self.coding_rate = self.tx_power = 0
        self.enable_crc = True

    def listen(self) -> None:
        pass

    def send(self, data: bytes, keep_listening: bool = False) -> bool:
        self.sent.append(bytes(data))
        return True

    def receive(self, timeout: float | None = None) -> bytes | None:
        return None


def _bridge() -> tuple[Bridge, FakeSerial, FakeRadio]:
    s, r = FakeSerial(), FakeRadio()
    b = Bridge(r, s, lambda: 0.0, dict(config.DEFAULTS))
    b.step()  # greeting STATUS on connect
    s.out = b""
    return b, s, r


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(KINDS), seq=st.integers(0, 255), payload=payloads)
def test_bridge_firmware_at_and_past_every_limit(kind: int, seq: int, payload: bytes) -> None:
    b, s, r = _bridge()
    s.inbox = raw_wire(kind, seq, payload) + link.encode(link.PING, 200, b"after")
    for _ in range(3):
        b.step(rx_timeout=0)
    assert b.c["loop_errors"] == 0
    replies = link.Decoder().feed(s.out)
    assert replies[-1] == link.Message(link.PONG, 200, b"after")  # still answering
    mine = replies[:-1]
    if len(payload) > link.MAX_PAYLOAD:
        assert b.decoder.errors == {"oversize": 1} and mine == [] and r.sent == []
        return
    if kind == link.PING:
        assert mine == [link.Message(link.PONG, seq, payload)]  # echo at the limit works
    elif kind == link.TX:
        assert (r.sent == [payload]) == (mine == [])  # sent, or refused with a LOG
        if mine:
            assert mine[0].kind == link.LOG and mine[0].seq == seq
    elif kind == link.STATUS:
        assert [m.kind for m in mine] == [link.STATUS] and mine[0].seq == seq
    elif kind == link.CONFIG:
        assert len(mine) == 1 and mine[0].seq == seq
        assert mine[0].kind in (link.STATUS, link.LOG)


def test_bridge_status_always_fits_the_link() -> None:
    """Every counter at 2**32 - 1 and a long radio error: STATUS still goes out."""
    b, s, r = _bridge()
    for k in b.c:
        b.c[k] = 2**32 - 1
    for reason in ("bad_cobs", "bad_crc", "oversize", "truncated", "bad_type", "empty"):
        b.decoder.errors[reason] = 2**32 - 1
    b.decoder.dropped = 2**32 - 1
    b.radio_error = "SPI timeout " * 40
    b.noise = -123.4
    s.inbox = link.encode(link.STATUS, 9, b"")
    b.step(rx_timeout=0)
    out = link.Decoder().feed(s.out)
    assert [m.kind for m in out] == [link.STATUS] and out[0].seq == 9
    doc = json.loads(out[0].payload)
    assert doc["radio"]["sf"] == config.DEFAULTS["sf"]
    assert len(out[0].payload) <= link.MAX_PAYLOAD


def test_protocol_doc_states_the_codes_limits_and_defaults() -> None:
    """docs/protocol.md and link.py / airtime.py state one truth."""
    import re
    from pathlib import Path

    from panicproto import airtime

    doc = (Path(__file__).resolve().parents[2] / "docs" / "protocol.md").read_text()
    rows = {m[2]: m[1] for m in re.findall(r"^\| ([^|]+) \| ([^|]+) \| `(MAX_\w+)` \|$", doc,
                                              re.M)}
    nums = {k: [int(n) for n in re.findall(r"\d+", v)] for k, v in rows.items()}
    assert nums["MAX_PAYLOAD"] == [0, link.MAX_PAYLOAD]
    assert nums["MAX_FRAME"] == [4, link.MAX_FRAME]
    assert nums["MAX_ENCODED"] == [link.MAX_ENCODED]
    assert nums["MAX_WIRE"] == [link.MAX_WIRE]
    assert f"payload ({0}-{link.MAX_PAYLOAD})" in doc
    for r in airtime.REGIONS.values():
        row = re.search(rf"^\| {re.escape(r.name)}( \(default\))? \| (.+) \|$", doc, re.M)
        assert row, r.name
        cells = [c.strip() for c in row.group(2).split("|")]
        assert cells == [f"{r.default_mhz:g} MHz", str(r.default_sf),
                         f"{r.default_bw_hz / 1000:g} kHz", f"4/{r.default_cr}",
                         f"{r.default_tx_power} dBm"], cells
