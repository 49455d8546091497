"""The group's registry as this gateway knows it: one entry per device, the newest wins.

Each entry is a device record (or a removal) with a registry generation ``gen``, which the
gateway that made the change sets to one more than the highest it knows for the device.
Entries are ordered by :func:`version`: ``gen`` first, then (only for two changes made at
the same moment from the same state) the record's key generation, removal over upsert, the
origin's id and a hash of the content. That is a total order, so the replica is a
max-register: whatever order entries arrive in, and however often, every gateway ends with
the same entry per device (:meth:`RegistryReplica.apply`):

- an older generation never overwrites a newer one (``stale``, counted);
- the same generation again is idempotent (``same``): re-published copies are harmless;
- two different entries of one generation (two installers, two gateways, same moment) are
  a ``conflict``: counted and logged, and the higher :func:`version` wins everywhere.

Guarding keys at the source (:meth:`RegistryReplica.check_local`): a gateway publishes a
change only once it has the group's registry (after its (re)connect, see the node), and
never an upsert whose key generation is below the one the group has, unless the operator
overrides (``--allow-older-key``, the import's own rule). So an old export imported at one
gateway cannot take the newer key away from the others.

The wire bytes of every entry are kept, so a gateway can re-publish an entry verbatim when
the broker lost its retained copy (the origin's tag still holds): :meth:`missing_on_broker`.
"""

from __future__ import annotations

import hashlib
import json
import threading
from collections import Counter
from dataclasses import dataclass

from panicgw.cluster.messages import RegistryEntry
from panicgw.registry import DeviceRecord, KeyConflictError

APPLIED = "applied"
SAME = "same"
STALE = "stale"
CONFLICT = "conflict"  # lost a same-generation conflict (the winner was applied)


def content_hash(record: DeviceRecord | None) -> bytes:
    if record is None:
        return b""
    text = json.dumps(record.to_dict(with_key=True), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).digest()


def version(e: RegistryEntry) -> tuple[int, int, int, str, bytes]:
    kg = e.record.key_gen if e.record is not None else 0
    return (e.gen, kg, 1 if e.op == "remove" else 0, e.origin, content_hash(e.record))


@dataclass
class _Held:
    entry: RegistryEntry
    payload: bytes | None  # as received/sent, for verbatim re-publishing


class RegistryReplica:
    """Thread-safe. ``stats`` counts applied/same/stale/conflict."""

    def __init__(self) -> None:
        self._held: dict[int, _Held] = {}
        self._on_broker: dict[int, int] = {}  # gen the broker re-sent since our connect
        self.stats: Counter[str] = Counter()
        self._lock = threading.Lock()

    def apply(self, e: RegistryEntry, payload: bytes | None = None) -> str:
        """Take ``e`` if it is newer than what we hold; returns APPLIED, SAME, STALE or
        CONFLICT (a same-generation entry that lost)."""
        with self._lock:
            cur = self._held.get(e.device_id)
            if cur is None or e.gen > cur.entry.gen:
                verdict = APPLIED
            elif e.gen < cur.entry.gen:
                verdict = STALE
            elif version(e) == version(cur.entry):
                if cur.payload is None and payload is not None:
                    cur.payload = payload
                verdict = SAME
            else:
                self.stats["conflicts_seen"] += 1
                verdict = APPLIED if version(e) > version(cur.entry) else CONFLICT
            if verdict == APPLIED:
                self._held[e.device_id] = _Held(e, payload)
            self.stats[verdict] += 1
            return verdict

    def get(self, device_id: int) -> RegistryEntry | None:
        with self._lock:
            h = self._held.get(device_id)
            return h.entry if h is not None else None

    def next_gen(self, device_id: int) -> int:
        with self._lock:
            h = self._held.get(device_id)
            return 1 if h is None else h.entry.gen + 1

    def check_local(self, record: DeviceRecord | None, device_id: int,
                    allow_older_key: bool = False) -> bool:
        """Whether a local change should be published: False when the group already has
        exactly this (an echo of a change that came from the group). Raises
        :class:`~panicgw.registry.KeyConflictError` for an upsert whose key generation is
        below the group's, or a different key of the same generation."""
        with self._lock:
            h = self._held.get(device_id)
            cur = h.entry if h is not None else None
        if cur is None:
            return True
        if record is None:
            return cur.op != "remove"
        if cur.record is None:  # re-registered after a removal: any key may come back
            return True
        if content_hash(record) == content_hash(cur.record):
            return False
        if not allow_older_key and record.key != cur.record.key \
                and record.key_gen <= cur.record.key_gen:
            raise KeyConflictError(device_id, cur.record.key_gen, record.key_gen)
        return True

    def entries(self) -> list[RegistryEntry]:
        with self._lock:
            return [h.entry for h in self._held.values()]

    def records(self) -> dict[int, DeviceRecord]:
        """The devices the group has (removed ones left out)."""
        with self._lock:
            return {i: h.entry.record for i, h in self._held.items()
                    if h.entry.record is not None}

    # -- repairing the broker's retained store --------------------------------------------

    def forget_broker(self) -> None:
        """Call at each (re)connect: the broker re-sends what it still retains."""
        with self._lock:
            self._on_broker.clear()

    def seen_on_broker(self, device_id: int, gen: int) -> None:
        with self._lock:
            self._on_broker[device_id] = max(gen, self._on_broker.get(device_id, 0))

    def missing_on_broker(self) -> list[tuple[int, bytes]]:
        """(device, wire bytes) of entries the broker did not re-send at our connect, or
        re-sent in an older generation: a broker restarted without its retained store, or
        a change made while it was down."""
        with self._lock:
            return [(i, h.payload) for i, h in self._held.items()
                    if h.payload is not None and self._on_broker.get(i, 0) < h.entry.gen]

    def payloads(self, device_ids: list[int]) -> list[tuple[int, bytes]]:
        """(device, wire bytes) of what we hold for these devices."""
        with self._lock:
            return [(i, h.payload) for i in device_ids
                    if (h := self._held.get(i)) is not None and h.payload is not None]

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)
