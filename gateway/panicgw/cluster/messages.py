"""Cluster messages: their topics and formats, and the codec that signs them, checks them
and turns away replays.

Topics (``<group>`` is ``[cluster] group``, ``<gw>`` a gateway id, ``<DEV>`` a device id as
8 upper-case hex digits); every gateway subscribes to ``panic/cluster/<group>/#``:

=====================================  ======  =========  =====================================
topic                                  retain  written by  what
=====================================  ======  =========  =====================================
``panic/cluster/<group>/rx/<gw>``      no      <gw>       one reception report per verified
                                                          frame: device, counter, key
                                                          generation, attempt, path, RSSI, SNR,
                                                          time, incident; never a key
``panic/cluster/<group>/claim/<gw>``   no      <gw>       "I transmit the LoRa downlink for
                                                          this uplink" (the election's outcome)
``panic/cluster/<group>/status/<gw>``  yes     <gw>       online, with its connection id and
                                                          details for the fleet view
``panic/cluster/<group>/gone/<gw>``    yes     broker     the last will: offline (same
                                                          connection id), or said at shutdown
``panic/cluster/<group>/digest/<gw>``  yes     <gw>       what <gw> itself heard: per device the
                                                          key generation, highest counter, last
                                                          time, RSSI/SNR (catch-up after outages)
``panic/cluster/<group>/registry/<DEV>``  yes  any        the device's record, AES-GCM encrypted,
                                                          with its registry generation; or its
                                                          removal (a tombstone)
=====================================  ======  =========  =====================================

Wire format: one line of compact JSON, a newline, the base64 HMAC-SHA256 tag::

    {"v":1,"kind":"rx","from":"gw-a","seq":7370..,"t":1714560000.12,"body":{...}}
    <tag>

The tag covers the topic and the JSON line (:data:`DOMAIN` + topic + NUL + line), so a
message can be neither altered nor moved to another topic. ``v`` is the format version: a
gateway drops versions it does not know (counted), which lets a group upgrade one gateway
at a time as long as a new version is only sent once all understand it.

Replays: ``seq`` grows with every message a gateway sends and never repeats across restarts
(:class:`~panicgw.cluster.sequence.SeqSource`). Per (sender, topic) a message
must carry a higher ``seq`` than the last one accepted, or it is a replay (counted,
dropped). Registry entries are the exception: any gateway re-publishes them verbatim to
repair a broker that lost its retained store, so there the registry generation orders them
(:mod:`panicgw.cluster.registry_replica`): an older one is stale, an equal one idempotent.
Every message's effect is monotone anyway (a maximum, a generation), so an authentic old
message replayed to a gateway that never saw it cannot move anything backwards.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from panicgw.cluster.crypto import CryptoError, GroupKeys
from panicgw.cluster.sequence import SeqSource
from panicgw.registry import DeviceRecord, RegistryError, record_from_dict

VERSION = 1
DOMAIN = b"panic-cluster/1\0"
ROOT = "panic/cluster"
KINDS = ("rx", "claim", "status", "gone", "digest", "registry")
PER_GATEWAY = ("rx", "claim", "status", "gone", "digest")  # topic ends with the sender
PATHS = ("lora", "wifi")
OPS = ("upsert", "remove")
MAX_PAYLOAD = 4 * 1024 * 1024  # a digest of 10,000 devices is ~0.5 MB

# Rejection reasons (counted by the codec; the registry replica adds its own).
MALFORMED = "malformed"
BAD_MAC = "bad_mac"
VERSION_UNKNOWN = "version"
REPLAY = "replay"
TOPIC_MISMATCH = "topic_mismatch"
UNDECRYPTABLE = "undecryptable"


class Rejected(ValueError):
    def __init__(self, reason: str, detail: str = "") -> None:
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason


def check_name(name: str, what: str) -> str:
    """Group and gateway ids become topic levels: no wildcards, no '/', not empty."""
    if not isinstance(name, str) or not name or any(c in name for c in "+#/\0") \
            or len(name) > 64:
        raise ValueError(f"{what} must be 1-64 characters without '+', '#', '/'")
    return name


def dev_hex(device_id: int) -> str:
    return f"{device_id:08X}"


class Topics:
    """Topic names of one group, and :meth:`parse` for the way back."""

    def __init__(self, group: str) -> None:
        self.group = check_name(group, "cluster group")
        self.base = f"{ROOT}/{group}"
        self.all = f"{self.base}/#"

    def of(self, kind: str, name: str) -> str:
        return f"{self.base}/{kind}/{name}"

    def registry(self, device_id: int) -> str:
        return self.of("registry", dev_hex(device_id))

    def parse(self, topic: str) -> tuple[str, str] | None:
        """(kind, last level) of one of our topics, else None."""
        if not topic.startswith(self.base + "/"):
            return None
        parts = topic[len(self.base) + 1:].split("/")
        if len(parts) != 2 or parts[0] not in KINDS or not parts[1]:
            return None
        return parts[0], parts[1]


class UplinkKey(NamedTuple):
    """One transmission of a button: a retry has the same counter and the next attempt."""

    device_id: int
    key_gen: int
    counter: int
    attempt: int


def _q(x: float | None) -> float | None:
    """Radio figures rounded once, at the source, to what the radio resolves (0.01 dB
    here): every gateway compares exactly the numbers the others compare."""
    return None if x is None else round(float(x), 2)


@dataclass(frozen=True)
class RxReport:
    """A frame this gateway verified (stored, or a copy of a stored one)."""

    gateway: str
    device_id: int
    key_gen: int
    counter: int
    attempt: int
    kind: str  # alarm, heartbeat, ... (panicproto.frames.TYPE_NAMES)
    path: str  # lora | wifi
    rssi: float | None
    snr: float | None
    at: float  # wall-clock reception time at the gateway
    downlink: bool = False  # the gateway has a LoRa downlink to send for it (an elector)
    incident: str | None = None
    status: str = "stored"  # the pipeline's verdict: stored | duplicate | resync

    def __post_init__(self) -> None:
        object.__setattr__(self, "rssi", _q(self.rssi))
        object.__setattr__(self, "snr", _q(self.snr))

    @property
    def key(self) -> UplinkKey:
        return UplinkKey(self.device_id, self.key_gen, self.counter, self.attempt)


@dataclass(frozen=True)
class Claim:
    """The election's winner says it transmits the downlink of ``key``."""

    gateway: str
    key: UplinkKey
    at: float


@dataclass(frozen=True)
class Status:
    gateway: str
    conn: int  # the connection's id: a ``Gone`` with the same id ends it
    at: float
    supervise: bool = True  # holds the group's registry and may report silences
    info: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Gone:
    gateway: str
    conn: int
    reason: str  # "connection lost" (the broker's last will) | "shutdown"


@dataclass(frozen=True)
class Heard:
    """What one gateway heard of one device, as in a digest."""

    key_gen: int
    highest: int
    at: float
    rssi: float | None = None
    snr: float | None = None


@dataclass(frozen=True)
class Digest:
    gateway: str
    at: float
    devices: dict[int, Heard]


@dataclass(frozen=True)
class RegistryEntry:
    """A registry change as it travels: ``sealed`` opens to the record (upserts only).
    ``record`` is filled in on receipt, once the codec decrypted and validated it."""

    origin: str
    device_id: int
    gen: int
    op: str  # upsert | remove
    sealed: bytes | None
    record: DeviceRecord | None = field(default=None, compare=False)

    def __repr__(self) -> str:  # never a key or a site in logs
        return (f"RegistryEntry(device=0x{self.device_id:08X}, gen={self.gen}, op={self.op}, "
                f"origin={self.origin!r})")


Message = RxReport | Claim | Status | Gone | Digest | RegistryEntry


class Outgoing(NamedTuple):
    topic: str
    payload: bytes
    retain: bool


class Incoming(NamedTuple):
    msg: Message
    sender: str
    seq: int
    payload: bytes  # the wire bytes, for a verbatim re-publish (registry repair)


def _int(v: Any, lo: int = 0, hi: int = (1 << 64) - 1) -> int:
    if not isinstance(v, int) or isinstance(v, bool) or not lo <= v <= hi:
        raise Rejected(MALFORMED, f"bad integer {v!r}")
    return v


def _num(v: Any, optional: bool = False) -> float | None:
    if v is None and optional:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not math.isfinite(v):
        raise Rejected(MALFORMED, f"bad number {v!r}")
    return float(v)


def _str(v: Any, choices: tuple[str, ...] | None = None, optional: bool = False) -> str | None:
    if v is None and optional:
        return None
    if not isinstance(v, str) or len(v) > 200 or (choices is not None and v not in choices):
        raise Rejected(MALFORMED, f"bad string {v!r}")
    return v


def _dev(v: Any) -> int:
    try:
        if not isinstance(v, str) or len(v) != 8:
            raise ValueError
        return int(v, 16)
    except ValueError:
        raise Rejected(MALFORMED, f"bad device id {v!r}") from None


def _b64(v: Any) -> bytes:
    if not isinstance(v, str) or len(v) > 16384:
        raise Rejected(MALFORMED, "sealed record missing or too long")
    try:
        return base64.b64decode(v, validate=True)
    except binascii.Error:
        raise Rejected(MALFORMED, "bad base64") from None


def _registry_aad(topic: str, origin: str, gen: int, op: str) -> bytes:
    return f"{topic}\0{origin}\0{gen}\0{op}".encode()


class Codec:
    """Signs what this gateway sends; verifies, decodes and de-replays what it receives.

    ``decode`` raises :class:`Rejected` and counts the reason in ``rejected``. It is called
    on the MQTT network thread, ``encode`` from any thread.
    """

    def __init__(self, keys: GroupKeys, gateway_id: str, *, seq: SeqSource | None = None,
                 clock: Callable[[], float] = time.time) -> None:
        self.keys = keys
        self.gateway_id = check_name(gateway_id, "gateway id")
        self.topics = Topics(keys.group)
        self.seq = seq or SeqSource(clock=clock)
        self.clock = clock
        self.rejected: Counter[str] = Counter()
        self.accepted = 0
        self._last: dict[tuple[str, str], int] = {}
        self._lock = threading.Lock()

    # -- sending -------------------------------------------------------------------------

    def _wire(self, topic: str, kind: str, body: dict[str, Any], sender: str | None = None
              ) -> bytes:
        env = {"v": VERSION, "kind": kind, "from": sender or self.gateway_id,
               "seq": self.seq.next(), "t": round(self.clock(), 3), "body": body}
        line = json.dumps(env, separators=(",", ":")).encode()
        tag = self.keys.sign(DOMAIN + topic.encode() + b"\0" + line)
        return line + b"\n" + base64.b64encode(tag)

    def encode(self, msg: Message) -> Outgoing:
        t = self.topics
        if isinstance(msg, RxReport):
            body = {"dev": dev_hex(msg.device_id), "kg": msg.key_gen, "ctr": msg.counter,
                    "att": msg.attempt, "kind": msg.kind, "path": msg.path, "rssi": msg.rssi,
                    "snr": msg.snr, "at": msg.at, "dl": msg.downlink, "inc": msg.incident,
                    "st": msg.status}
            topic, kind, retain = t.of("rx", self.gateway_id), "rx", False
        elif isinstance(msg, Claim):
            k = msg.key
            body = {"dev": dev_hex(k.device_id), "kg": k.key_gen, "ctr": k.counter,
                    "att": k.attempt, "at": msg.at}
            topic, kind, retain = t.of("claim", self.gateway_id), "claim", False
        elif isinstance(msg, Status):
            body = {"state": "online", "conn": msg.conn, "at": msg.at,
                    "supervise": msg.supervise, "info": msg.info}
            topic, kind, retain = t.of("status", self.gateway_id), "status", True
        elif isinstance(msg, Gone):
            body = {"state": "offline", "conn": msg.conn, "reason": msg.reason}
            topic, kind, retain = t.of("gone", self.gateway_id), "gone", True
        elif isinstance(msg, Digest):
            body = {"at": msg.at, "devices": {
                dev_hex(d): [h.key_gen, h.highest, h.at, _q(h.rssi), _q(h.snr)]
                for d, h in msg.devices.items()}}
            topic, kind, retain = t.of("digest", self.gateway_id), "digest", True
        elif isinstance(msg, RegistryEntry):
            body = {"dev": dev_hex(msg.device_id), "gen": msg.gen, "op": msg.op,
                    "sealed": base64.b64encode(msg.sealed).decode() if msg.sealed else None}
            topic, kind, retain = t.registry(msg.device_id), "registry", True
        else:
            raise TypeError(f"not a cluster message: {type(msg).__name__}")
        return Outgoing(topic, self._wire(topic, kind, body, getattr(msg, "origin", None)),
                        retain)

    def registry_entry(self, record: DeviceRecord | None, device_id: int, gen: int
                       ) -> RegistryEntry:
        """A sealed upsert of ``record``, or (``record`` None) the device's removal."""
        op = "remove" if record is None else "upsert"
        sealed = None
        if record is not None:
            plain = json.dumps(record.to_dict(with_key=True), separators=(",", ":")).encode()
            aad = _registry_aad(self.topics.registry(device_id), self.gateway_id, gen, op)
            sealed = self.keys.seal(plain, aad)
        return RegistryEntry(self.gateway_id, device_id, gen, op, sealed, record)

    # -- receiving -----------------------------------------------------------------------

    def decode(self, topic: str, payload: bytes) -> Incoming:
        try:
            return self._decode(topic, payload)
        except Rejected as e:
            with self._lock:
                self.rejected[e.reason] += 1
            raise

    def _decode(self, topic: str, payload: bytes) -> Incoming:
        where = self.topics.parse(topic)
        if where is None or len(payload) > MAX_PAYLOAD:
            raise Rejected(MALFORMED, "not a cluster topic or too large")
        line, sep, tag64 = payload.rpartition(b"\n")
        if not sep:
            raise Rejected(BAD_MAC, "no tag")
        try:
            tag = base64.b64decode(tag64, validate=True)
        except binascii.Error:
            raise Rejected(BAD_MAC, "tag is not base64") from None
        if not self.keys.verify(DOMAIN + topic.encode() + b"\0" + line, tag):
            raise Rejected(BAD_MAC, f"on {topic}")
        try:
            env = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            raise Rejected(MALFORMED, "not JSON") from None
        if not isinstance(env, dict) or not isinstance(env.get("body"), dict):
            raise Rejected(MALFORMED, "no body")
        if env.get("v") != VERSION:
            raise Rejected(VERSION_UNKNOWN, repr(env.get("v")))
        kind, name = where
        if env.get("kind") != kind:
            raise Rejected(TOPIC_MISMATCH, f"{env.get('kind')!r} on {topic}")
        sender = _str(env.get("from")) or ""
        try:
            check_name(sender, "sender")
        except ValueError:
            raise Rejected(MALFORMED, "bad sender") from None
        if kind in PER_GATEWAY and sender != name:
            raise Rejected(TOPIC_MISMATCH, f"{sender!r} on {topic}")
        seq = _int(env.get("seq"), 1)
        msg = self._body(kind, name, topic, sender, env["body"])
        if kind != "registry":
            with self._lock:
                if seq <= self._last.get((sender, topic), 0):
                    raise Rejected(REPLAY, f"{topic} seq {seq}")
                self._last[(sender, topic)] = seq
        self.accepted += 1
        return Incoming(msg, sender, seq, payload)

    def _body(self, kind: str, name: str, topic: str, sender: str, b: dict[str, Any]
              ) -> Message:
        if kind == "rx":
            return RxReport(
                sender, _dev(b.get("dev")), _int(b.get("kg"), 1), _int(b.get("ctr"), 0,
                0xFFFFFFFF), _int(b.get("att"), 0, 255), _str(b.get("kind")) or "",
                _str(b.get("path"), PATHS) or "", _num(b.get("rssi"), True),
                _num(b.get("snr"), True), _num(b.get("at")) or 0.0, b.get("dl") is True,
                _str(b.get("inc"), optional=True), _str(b.get("st")) or "")
        if kind == "claim":
            key = UplinkKey(_dev(b.get("dev")), _int(b.get("kg"), 1),
                            _int(b.get("ctr"), 0, 0xFFFFFFFF), _int(b.get("att"), 0, 255))
            return Claim(sender, key, _num(b.get("at")) or 0.0)
        if kind == "status":
            info = b.get("info")
            return Status(sender, _int(b.get("conn")), _num(b.get("at")) or 0.0,
                          b.get("supervise") is not False, info if isinstance(info, dict)
                          else {})
        if kind == "gone":
            return Gone(sender, _int(b.get("conn")), _str(b.get("reason")) or "")
        if kind == "digest":
            devs = b.get("devices")
            if not isinstance(devs, dict):
                raise Rejected(MALFORMED, "digest without devices")
            out: dict[int, Heard] = {}
            for d, v in devs.items():
                if not isinstance(v, list) or len(v) != 5:
                    raise Rejected(MALFORMED, "digest entry")
                out[_dev(d)] = Heard(_int(v[0], 1), _int(v[1], 0, 0xFFFFFFFF),
                                     _num(v[2]) or 0.0, _num(v[3], True), _num(v[4], True))
            return Digest(sender, _num(b.get("at")) or 0.0, out)
        # registry
        device_id = _dev(b.get("dev"))
        if dev_hex(device_id) != name:
            raise Rejected(TOPIC_MISMATCH, f"device {b.get('dev')!r} on {topic}")
        gen = _int(b.get("gen"), 1)
        op = _str(b.get("op"), OPS) or ""
        if op == "remove":
            return RegistryEntry(sender, device_id, gen, op, None)
        sealed = _b64(b.get("sealed"))
        try:
            plain = self.keys.unseal(sealed, _registry_aad(topic, sender, gen, op))
            record = record_from_dict(json.loads(plain))
        except CryptoError:
            raise Rejected(UNDECRYPTABLE, f"registry entry for {name}") from None
        except (ValueError, RegistryError) as e:  # never echo the record: it holds the key
            raise Rejected(MALFORMED, f"registry record for {name}: "
                           f"{type(e).__name__}") from None
        if record.device_id != device_id:
            raise Rejected(TOPIC_MISMATCH, f"record of another device on {topic}")
        return RegistryEntry(sender, device_id, gen, op, sealed, record)
