"""Uplink (button to gateway) and downlink (gateway to button) radio frames.

Uplink, 19 bytes, big-endian::

    0   1  version << 4 | type        (ALARM, CANCEL, HEARTBEAT, TEST, TAMPER)
    1   4  device id
    5   4  counter                    (epoch << 16 | sequence; never repeats)
    9   1  flags                      (bits 0-3 attempt, 4 low battery, 5 tamper, 6 Wi-Fi)
    10  1  battery                    (20 mV steps, 0-5100 mV)
    11  8  tag                        (HMAC-SHA256(key, b"PB1" + dir + bytes[0:11])[:8])

Downlink, 18 bytes: version << 4 | type (ACK, RESYNC), device id, counter, status, tag
over bytes[0:10] with direction byte 1. docs/protocol.md explains every rule.
"""

import struct

from panicproto import (  # noqa: F401 (the shared numbers, re-exported: frames.ALARM)
    ACK,
    ALARM,
    CANCEL,
    DELIVERED,
    HEARTBEAT,
    RESYNC,
    STORED,
    TAMPER,
    TEST,
    mac,
    make_counter,
    split_counter,
)
from panicproto.errors import FIELD, KEY, LONG, SHORT, TAG, TYPE, VERSION, ProtocolError

VERSION_1 = 1
KEY_LEN = 16
TAG_LEN = 8
UPLINK_LEN = 19
DOWNLINK_LEN = 18
DOMAIN = b"PB1"
DIR_UP = 0
DIR_DOWN = 1

UPLINK_TYPES = (ALARM, CANCEL, HEARTBEAT, TEST, TAMPER)
DOWNLINK_TYPES = (ACK, RESYNC)
TYPE_NAMES = {
    ALARM: "alarm",
    CANCEL: "cancel",
    HEARTBEAT: "heartbeat",
    TEST: "test",
    TAMPER: "tamper",
    ACK: "ack",
    RESYNC: "resync",
}
# Uplink flags.
ATTEMPT_MASK = 0x0F
FLAG_LOW_BATTERY = 0x10
FLAG_TAMPER = 0x20
FLAG_WIFI = 0x40
FLAG_RESERVED = 0x80

BATTERY_STEP_MV = 20
MAX_U32 = 0xFFFFFFFF


def compute_tag(key, direction, body):
    """8-byte tag over ``body`` (the frame without its tag) for one direction."""
    if len(key) != KEY_LEN:
        raise ProtocolError(KEY, "key must be %d bytes" % KEY_LEN)
    return mac.hmac_sha256(key, DOMAIN + bytes((direction,)) + body)[:TAG_LEN]


def _check_u32(name, value):
    if not 0 <= value <= MAX_U32:
        raise ProtocolError(FIELD, "%s out of range" % name)


class Uplink:
    """A decoded uplink. ``battery_mv`` is in millivolts (20 mV resolution)."""

    def __init__(self, kind, device_id, counter, attempt=0, low_battery=False, tamper=False,
                 wifi=False, battery_mv=0, tag=b""):
        self.kind = kind
        self.device_id = device_id
        self.counter = counter
        self.attempt = attempt
        self.low_battery = low_battery
        self.tamper = tamper
        self.wifi = wifi
        self.battery_mv = battery_mv
        self.tag = tag

    @property
    def flags(self):
        f = min(self.attempt, ATTEMPT_MASK)
        if self.low_battery:
            f |= FLAG_LOW_BATTERY
        if self.tamper:
            f |= FLAG_TAMPER
        if self.wifi:
            f |= FLAG_WIFI
        return f

    def fields(self):
        """The frame's fields as a plain dict (used by vectors and logs)."""
        return {
            "type": TYPE_NAMES[self.kind],
            "device_id": self.device_id,
            "counter": self.counter,
            "attempt": self.attempt,
            "low_battery": self.low_battery,
            "tamper": self.tamper,
            "wifi": self.wifi,
            "battery_mv": self.battery_mv,
        }

    def __eq__(self, other):
        return isinstance(other, Uplink) and self.fields() == other.fields()

    def __repr__(self):
        return "Uplink(%r)" % (self.fields(),)


class Downlink:
    """A decoded downlink. For RESYNC, ``counter`` is the next counter the device must use."""

    def __init__(self, kind, device_id, counter, status=0, tag=b""):
        self.kind = kind
        self.device_id = device_id
        self.counter = counter
        self.status = status
        self.tag = tag

    def fields(self):
        return {
            "type": TYPE_NAMES[self.kind],
            "device_id": self.device_id,
            "counter": self.counter,
            "status": self.status,
        }

    def __eq__(self, other):
        return isinstance(other, Downlink) and self.fields() == other.fields()

    def __repr__(self):
        return "Downlink(%r)" % (self.fields(),)


def encode_uplink(key, up):
    """Signed 19-byte frame for ``up``. The battery value is clamped to 0-5100 mV."""
    if up.kind not in UPLINK_TYPES:
        raise ProtocolError(TYPE, "not an uplink type")
    _check_u32("device_id", up.device_id)
    _check_u32("counter", up.counter)
    if up.attempt < 0:
        raise ProtocolError(FIELD, "attempt out of range")
    steps = (up.battery_mv + BATTERY_STEP_MV // 2) // BATTERY_STEP_MV
    steps = 0 if steps < 0 else (255 if steps > 255 else steps)
    body = struct.pack(">BIIBB", (VERSION_1 << 4) | up.kind, up.device_id, up.counter,
                       up.flags, steps)
    return body + compute_tag(key, DIR_UP, body)


def _header(data, length, types):
    n = len(data)
    if n < length:
        raise ProtocolError(SHORT, "%d bytes, need %d" % (n, length))
    if n > length:
        raise ProtocolError(LONG, "%d bytes, max %d" % (n, length))
    if data[0] >> 4 != VERSION_1:
        raise ProtocolError(VERSION, "version %d" % (data[0] >> 4))
    kind = data[0] & 0x0F
    if kind not in types:
        raise ProtocolError(TYPE, "type %d" % kind)
    return kind


def verify(key, direction, data):
    """Raise ProtocolError(bad_tag) unless the frame's trailing tag is valid under ``key``."""
    body = data[:-TAG_LEN]
    if not mac.equal(compute_tag(key, direction, bytes(body)), bytes(data[-TAG_LEN:])):
        raise ProtocolError(TAG)


def peek_device_id(data):
    """Device id of an uplink without checking anything else (for key lookup)."""
    if len(data) < 5:
        raise ProtocolError(SHORT)
    return struct.unpack(">I", bytes(data[1:5]))[0]


def decode_uplink(data, key=None):
    """Parse a 19-byte uplink; with ``key``, also verify its tag (raises ProtocolError)."""
    data = bytes(data)
    kind = _header(data, UPLINK_LEN, UPLINK_TYPES)
    _, device_id, counter, flags, steps = struct.unpack(">BIIBB", data[:11])
    if flags & FLAG_RESERVED:
        raise ProtocolError(FIELD, "reserved flag bit set")
    if key is not None:
        verify(key, DIR_UP, data)
    return Uplink(kind, device_id, counter, flags & ATTEMPT_MASK,
                  bool(flags & FLAG_LOW_BATTERY), bool(flags & FLAG_TAMPER),
                  bool(flags & FLAG_WIFI), steps * BATTERY_STEP_MV, data[11:])


def _check_downlink(down):
    if down.kind == ACK:
        if down.status not in (STORED, DELIVERED):
            raise ProtocolError(FIELD, "ACK status must be STORED or DELIVERED")
    elif down.kind == RESYNC:
        if down.status != 0:
            raise ProtocolError(FIELD, "RESYNC status must be 0")
    else:
        raise ProtocolError(TYPE, "type %d" % down.kind)


def encode_downlink(key, down):
    """Signed 18-byte downlink (the gateway computes every downlink; bridges hold no keys)."""
    _check_downlink(down)
    _check_u32("device_id", down.device_id)
    _check_u32("counter", down.counter)
    body = struct.pack(">BIIB", (VERSION_1 << 4) | down.kind, down.device_id, down.counter,
                       down.status)
    return body + compute_tag(key, DIR_DOWN, body)


def decode_downlink(data, key):
    """Parse and verify an 18-byte downlink. The key is mandatory: devices act on it."""
    data = bytes(data)
    kind = _header(data, DOWNLINK_LEN, DOWNLINK_TYPES)
    _, device_id, counter, status = struct.unpack(">BIIB", data[:10])
    down = Downlink(kind, device_id, counter, status, data[10:])
    _check_downlink(down)
    verify(key, DIR_DOWN, data)
    return down
