"""Bridge <-> gateway serial link: COBS frames delimited by 0x00, CRC-16/CCITT-FALSE.

A link frame before COBS is ``type | seq | payload | crc16`` (CRC big-endian, over
type, seq and payload). On the wire each frame is ``0x00 COBS(frame) 0x00``: the leading
delimiter flushes any garbage that came before, so one corrupt burst costs at most the
frame it touched. ``Decoder`` is incremental and resynchronises on the next 0x00.

Size limits (docs/protocol.md states the same numbers; all derive from MAX_PAYLOAD):
payload 0-512 bytes, frame 4-516, COBS-encoded frame at most 519 (one code byte per
started 254-byte block), 521 on the wire with both delimiters. ``decode`` refuses any
frame whose payload is over MAX_PAYLOAD, whatever its encoded length (COBS of a frame
with zero bytes is shorter than the worst case), so everything the decoder accepts can be
encoded again: answering a PING with its own payload can never fail.
"""

import struct

from panicproto.crc import crc16
from panicproto.errors import COBS, CRC, EMPTY, OVERSIZE, TRUNCATED, TYPE, ProtocolError

RX = 1  # bridge -> host: rssi int16 dBm | snr int8 (0.25 dB) | radio frame
TX = 2  # host -> bridge: radio frame to transmit now
STATUS = 3  # bridge -> host: JSON object; host -> bridge with empty payload: request
PING = 4  # either way: opaque payload, answered by PONG with the same payload
PONG = 5
CONFIG = 6  # host -> bridge: JSON object of radio settings to apply
LOG = 7  # bridge -> host: UTF-8 text
TYPE_NAMES = {RX: "rx", TX: "tx", STATUS: "status", PING: "ping", PONG: "pong",
              CONFIG: "config", LOG: "log"}

MAX_PAYLOAD = 512
MAX_FRAME = 2 + MAX_PAYLOAD + 2  # type, seq, payload, CRC: 516
MAX_ENCODED = MAX_FRAME + (MAX_FRAME + 253) // 254  # worst-case COBS of MAX_FRAME: 519
MAX_WIRE = MAX_ENCODED + 2  # with both 0x00 delimiters: 521
MAX_RADIO = 255  # LoRa packet (SX127x FIFO); an RX payload is 3 + 1..MAX_RADIO bytes


def cobs_encode(data):
    """Consistent Overhead Byte Stuffing (canonical form): output has no 0x00 bytes."""
    out = bytearray(b"\x00")
    code_at = 0
    code = 1
    last = len(data) - 1
    for i in range(len(data)):
        b = data[i]
        if b:
            out.append(b)
            code += 1
            if code < 0xFF:
                continue
            if i == last:  # a full block ends the data: no empty block after it
                out[code_at] = code
                return bytes(out)
        out[code_at] = code
        code = 1
        code_at = len(out)
        out.append(0)
    out[code_at] = code
    return bytes(out)


def cobs_decode(data):
    """Inverse of cobs_encode; raises ProtocolError(bad_cobs) on invalid input."""
    out = bytearray()
    i = 0
    n = len(data)
    while i < n:
        code = data[i]
        if code == 0:
            raise ProtocolError(COBS, "zero byte inside frame")
        end = i + code
        if end > n:
            raise ProtocolError(COBS, "block runs past end")
        block = data[i + 1:end]
        if 0 in block:
            raise ProtocolError(COBS, "zero byte inside frame")
        out.extend(block)
        i = end
        if code < 0xFF and i < n:
            out.append(0)
    return bytes(out)


class Message:
    """One link message; ``seq`` (0-255) lets the host match replies and spot losses."""

    def __init__(self, kind, seq, payload=b""):
        self.kind = kind
        self.seq = seq
        self.payload = bytes(payload)

    def __eq__(self, other):
        return (isinstance(other, Message) and self.kind == other.kind
                and self.seq == other.seq and self.payload == other.payload)

    def __repr__(self):
        return "Message(%s, %d, %r)" % (TYPE_NAMES.get(self.kind, self.kind), self.seq,
                                        self.payload)


def encode(kind, seq, payload=b""):
    """Wire bytes (with both delimiters) for one message."""
    if kind not in TYPE_NAMES:
        raise ProtocolError(TYPE, "link type %d" % kind)
    if len(payload) > MAX_PAYLOAD:
        raise ProtocolError(OVERSIZE, "payload %d bytes" % len(payload))
    frame = bytes((kind, seq & 0xFF)) + bytes(payload)
    frame += struct.pack(">H", crc16(frame))
    return b"\x00" + cobs_encode(frame) + b"\x00"


def decode(encoded):
    """Message from the bytes between two delimiters; raises ProtocolError."""
    if not encoded:
        raise ProtocolError(EMPTY)
    if len(encoded) > MAX_ENCODED:
        raise ProtocolError(OVERSIZE, "%d bytes" % len(encoded))
    frame = cobs_decode(encoded)
    if len(frame) > MAX_FRAME:
        raise ProtocolError(OVERSIZE, "payload %d bytes, limit %d" % (len(frame) - 4,
                                                                      MAX_PAYLOAD))
    if len(frame) < 4:
        raise ProtocolError(TRUNCATED, "frame of %d bytes" % len(frame))
    if struct.unpack(">H", frame[-2:])[0] != crc16(frame[:-2]):
        raise ProtocolError(CRC)
    if frame[0] not in TYPE_NAMES:
        raise ProtocolError(TYPE, "link type %d" % frame[0])
    return Message(frame[0], frame[1], frame[2:-2])


def rx_payload(radio_frame, rssi, snr):
    """RX payload: RSSI in dBm (int16), SNR in dB (sent in 0.25 dB steps), radio bytes."""
    q = int(round(snr * 4))
    q = -128 if q < -128 else (127 if q > 127 else q)
    r = -32768 if rssi < -32768 else (32767 if rssi > 32767 else int(rssi))
    return struct.pack(">hb", r, q) + bytes(radio_frame)


def parse_rx(payload):
    """(radio_frame, rssi_dbm, snr_db) from an RX payload; raises ProtocolError(truncated)."""
    if len(payload) < 4:
        raise ProtocolError(TRUNCATED, "RX payload of %d bytes" % len(payload))
    if len(payload) > 3 + MAX_RADIO:
        raise ProtocolError(OVERSIZE, "RX radio frame too long")
    rssi, q = struct.unpack(">hb", payload[:3])
    return bytes(payload[3:]), rssi, q / 4


class Decoder:
    """Incremental stream decoder. ``feed`` returns complete messages; bad frames are
    counted in ``errors`` (reason -> count) and their bytes in ``dropped`` (delimiters
    excluded), so a noisy line is visible in diagnostics instead of silent."""

    def __init__(self):
        self._buf = bytearray()
        self._skipping = False
        self.dropped = 0
        self.errors = {}
        self.frames = 0

    def _reject(self, reason, nbytes):
        self.errors[reason] = self.errors.get(reason, 0) + 1
        self.dropped += nbytes

    def feed(self, data):
        out = []
        buf = self._buf
        for b in data:
            if b == 0:
                if self._skipping:
                    self._skipping = False
                elif buf:
                    try:
                        out.append(decode(bytes(buf)))
                        self.frames += 1
                    except ProtocolError as e:
                        self._reject(e.reason, len(buf))
                    buf = self._buf = bytearray()
                continue
            if self._skipping:
                self.dropped += 1
                continue
            buf.append(b)
            if len(buf) > MAX_ENCODED:
                self._reject(OVERSIZE, len(buf))
                buf = self._buf = bytearray()
                self._skipping = True
        return out

    @property
    def pending(self):
        """Bytes buffered for a frame whose closing delimiter has not arrived yet."""
        return len(self._buf)
