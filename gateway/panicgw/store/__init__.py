"""The gateway's SQLite store: registry, replay state, events, incidents, outbox, dead letters.

Durability rules (docs/gateway.md explains them):
- WAL with ``synchronous=FULL``: a commit has reached the disk before we ACK STORED.
- An event, its outbox row and the device's replay-window state are written in ONE
  transaction, so a crash either keeps all three or none (and the button's retry is then
  a new frame to us, never a lost or doubled alarm).
- Heartbeat history is pruned by age; nothing with an undelivered outbox row is ever pruned.
- The DB file (and so its -wal/-shm, which SQLite creates with the same mode) is 0600:
  it holds device keys.

Outbox priorities: a smaller number is more urgent (``PRIO_ALARM`` = 0 first).
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

from panicgw.registry import DeviceRecord, KeyConflictError, SiteRecord, validate
from panicproto import mac

PRIO_ALARM = 0
PRIO_EVENT = 1  # tamper, cancel, test
PRIO_TROUBLE = 2  # supervision lost/restore, low battery, bridge trouble
PRIO_OTHER = 3  # periodic check-in, heartbeats and everything else

# Each entry upgrades the schema by one version (PRAGMA user_version). Never edit a shipped
# entry: append a new one.
MIGRATIONS: list[str] = [
    """
    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    CREATE TABLE sites (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL,
        kind TEXT NOT NULL CHECK (kind IN ('shop', 'home')),
        address TEXT NOT NULL,
        lat REAL NOT NULL,
        lon REAL NOT NULL,
        contact TEXT NOT NULL DEFAULT '',
        phone TEXT NOT NULL DEFAULT '',
        UNIQUE (name, address)
    );
    CREATE TABLE devices (
        device_id INTEGER PRIMARY KEY,
        key BLOB NOT NULL CHECK (length(key) = 16),
        site_id INTEGER NOT NULL REFERENCES sites(id),
        label TEXT NOT NULL DEFAULT '',
        paths TEXT NOT NULL,
        supervision_s INTEGER NOT NULL,
        firmware TEXT,
        registered_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE TABLE device_state (
        device_id INTEGER PRIMARY KEY,
        replay_highest INTEGER NOT NULL DEFAULT -1,
        replay_bitmap TEXT NOT NULL DEFAULT '0',
        last_heard REAL,
        last_path TEXT,
        last_rssi REAL,
        last_snr REAL,
        battery_mv INTEGER,
        low_battery INTEGER NOT NULL DEFAULT 0,
        supervision TEXT NOT NULL DEFAULT 'ok',
        battery_alarm INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE incidents (
        incident_id TEXT PRIMARY KEY,
        device_id INTEGER,
        kind TEXT NOT NULL,
        first_heard REAL NOT NULL,
        last_heard REAL NOT NULL,
        press_count INTEGER NOT NULL DEFAULT 1
    );
    CREATE INDEX incidents_by_device ON incidents (device_id, kind, last_heard);
    CREATE TABLE events (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL,
        counter INTEGER NOT NULL,
        kind TEXT NOT NULL,
        incident_id TEXT,
        received_at REAL NOT NULL,
        attempt INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        battery_mv INTEGER NOT NULL,
        frame BLOB NOT NULL,
        UNIQUE (device_id, counter)
    );
    CREATE INDEX events_by_kind_time ON events (kind, received_at);
    CREATE TABLE receptions (
        id INTEGER PRIMARY KEY,
        event_id INTEGER NOT NULL REFERENCES events(id) ON DELETE CASCADE,
        path TEXT NOT NULL,
        rssi REAL,
        snr REAL,
        at REAL NOT NULL,
        duplicate INTEGER NOT NULL
    );
    CREATE INDEX receptions_by_event ON receptions (event_id);
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        incident_id TEXT NOT NULL,
        event_id INTEGER,
        priority INTEGER NOT NULL,
        payload TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        created_at REAL NOT NULL,
        next_at REAL NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'dead')),
        delivered_at REAL,
        http_status INTEGER,
        response TEXT,
        last_error TEXT
    );
    CREATE INDEX outbox_due ON outbox (priority, next_at, created_at) WHERE state = 'pending';
    CREATE INDEX outbox_by_incident ON outbox (incident_id);
    CREATE TABLE dead_letters (
        id INTEGER PRIMARY KEY,
        outbox_id INTEGER NOT NULL,
        incident_id TEXT NOT NULL,
        payload TEXT NOT NULL,
        reason TEXT NOT NULL,
        at REAL NOT NULL
    );
    CREATE TABLE rejections (
        reason TEXT PRIMARY KEY,
        count INTEGER NOT NULL,
        last_at REAL NOT NULL
    );
    """,
    # v2: dead letters can be requeued by a technician (`panicgw outbox requeue`); the dead
    # letter row keeps when, and the outbox row how often, so the history stays readable.
    """
    ALTER TABLE dead_letters ADD COLUMN requeued_at REAL;
    ALTER TABLE outbox ADD COLUMN requeues INTEGER NOT NULL DEFAULT 0;
    CREATE INDEX dead_letters_by_outbox ON dead_letters (outbox_id);
    """,
    # v3: key generations (1 at provision, +1 per rekey) so an old export cannot silently
    # put back a replaced key; enrolled_at: when the device was last (re)enrolled
    # (registered, rekeyed, or re-registered with a new key or supervision interval),
    # which is where supervision starts counting silence (panicgw.supervision.silent_since).
    """
    ALTER TABLE devices ADD COLUMN key_gen INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE devices ADD COLUMN enrolled_at REAL NOT NULL DEFAULT 0;
    UPDATE devices SET enrolled_at = registered_at;
    """,
    # v4: a rekey restarts the button's counter (docs/protocol.md, "The top of the counter
    # space"), so everything keyed on the counter is scoped by key generation: events are
    # unique per (device, key generation, counter) (SQLite cannot drop the old UNIQUE: the
    # table is rebuilt, ids kept, receptions untouched because migrate() runs with foreign
    # keys off), and incidents remember the generation they belong to. retired_keys keeps,
    # per device, a fingerprint of every key it no longer uses with the replay window that
    # key had: a key that comes back (an older export imported with --allow-older-key, a
    # re-registered device) gets that window back, so frames recorded under it stay refused.
    """
    CREATE TABLE events_v4 (
        id INTEGER PRIMARY KEY,
        device_id INTEGER NOT NULL,
        counter INTEGER NOT NULL,
        kind TEXT NOT NULL,
        incident_id TEXT,
        received_at REAL NOT NULL,
        attempt INTEGER NOT NULL,
        flags INTEGER NOT NULL,
        battery_mv INTEGER NOT NULL,
        frame BLOB NOT NULL,
        key_gen INTEGER NOT NULL DEFAULT 1,
        UNIQUE (device_id, counter, key_gen)
    );
    INSERT INTO events_v4 (id, device_id, counter, kind, incident_id, received_at, attempt,
                           flags, battery_mv, frame)
        SELECT id, device_id, counter, kind, incident_id, received_at, attempt, flags,
               battery_mv, frame FROM events;
    DROP TABLE events;
    ALTER TABLE events_v4 RENAME TO events;
    CREATE INDEX events_by_kind_time ON events (kind, received_at);
    ALTER TABLE incidents ADD COLUMN key_gen INTEGER NOT NULL DEFAULT 1;
    CREATE TABLE retired_keys (
        device_id INTEGER NOT NULL,
        fingerprint BLOB NOT NULL,
        key_gen INTEGER NOT NULL,
        replay_highest INTEGER NOT NULL,
        replay_bitmap TEXT NOT NULL,
        retired_at REAL NOT NULL,
        PRIMARY KEY (device_id, fingerprint)
    );
    """,
]


class OutboxItem(NamedTuple):
    """One dispatch message waiting, as forwarder.OutboxStore hands it out."""

    id: int
    incident_id: str
    priority: int
    payload: dict[str, Any]
    attempts: int
    created_at: float


class DeviceState(NamedTuple):
    device_id: int
    replay_highest: int
    replay_bitmap: int
    last_heard: float | None
    last_path: str | None
    last_rssi: float | None
    last_snr: float | None
    battery_mv: int | None
    low_battery: bool
    supervision: str
    battery_alarm: bool


USE_THE_GATEWAYS_DB = ("pass the gateway's config with --config (the file `panicgw run "
                       "--config` uses; the DB is <[gateway] data_dir>/gateway.db)")


class StoreError(RuntimeError):
    """The DB cannot be opened or is from a newer gateway version."""


def _secure_create(path: Path) -> None:
    """Create the DB file 0600 before SQLite touches it (its -wal/-shm inherit the mode).

    An existing file is never opened here: closing any descriptor on a SQLite file drops
    every POSIX lock this process holds on it, and a second Store in a running daemon (the
    forwarder's) would then let another process delete the daemon's live WAL.
    """
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600))
    except FileExistsError:
        pass
    if os.stat(path).st_mode & 0o077:
        os.chmod(path, 0o600)


class Store:
    """One connection, used from one thread (the daemon's store thread, or a CLI)."""

    def __init__(self, path: str | os.PathLike[str], *, check_same_thread: bool = True,
                 autocheckpoint: bool = True, create: bool = True,
                 readonly: bool = False) -> None:
        """``autocheckpoint=False``: this connection never runs WAL checkpoints itself (the
        daemon checkpoints from another thread so a commit never waits for one).

        ``create=False`` (every tool): the file must exist and carry the gateway's schema;
        only the daemon creates the DB, so a mistyped path can never become a second,
        unread registry. ``readonly=True`` also opens it read-only (no migration)."""
        self.path = Path(path)
        if create and not readonly:
            _secure_create(self.path)
        elif not self.path.is_file():
            raise StoreError(f"no gateway DB at {self.path}: only the gateway creates it "
                             "(`panicgw run` when it first starts, or `sudo panicgw setup` on "
                             f"a fresh Pi); {USE_THE_GATEWAYS_DB}")
        try:
            if readonly:
                self.db = sqlite3.connect(
                    f"{self.path.resolve().as_uri()}?mode=ro", uri=True,
                    isolation_level=None, check_same_thread=check_same_thread, timeout=10.0,
                )
            else:
                self.db = sqlite3.connect(
                    self.path, isolation_level=None, check_same_thread=check_same_thread,
                    timeout=10.0,
                )
                if not create:  # before any pragma: never convert someone else's file
                    self._check_schema()
                self.db.execute("PRAGMA journal_mode=WAL")
                self.db.execute("PRAGMA synchronous=FULL")
                self.db.execute("PRAGMA foreign_keys=ON")
                if not autocheckpoint:
                    self.db.execute("PRAGMA wal_autocheckpoint=0")
            if readonly:
                self._check_schema()
            else:
                self.migrate()
        except sqlite3.DatabaseError as e:
            if create and not readonly:
                raise StoreError(f"cannot open gateway DB {self.path}: {e}") from None
            raise StoreError(f"cannot open gateway DB {self.path}: {e}; it is not a gateway "
                             f"DB: {USE_THE_GATEWAYS_DB}") from None
        self._in_tx = False

    def _check_schema(self) -> None:
        """Refuse a file that is not a gateway DB (or one this panicgw cannot read)."""
        have = self.schema_version
        if have == 0:
            self.db.close()
            raise StoreError(f"{self.path} is not a gateway DB (no panicgw schema): "
                             f"{USE_THE_GATEWAYS_DB}")
        if have > len(MIGRATIONS):
            self.db.close()
            raise StoreError(f"{self.path} has schema v{have}, this panicgw knows up to "
                             f"v{len(MIGRATIONS)}: upgrade panicgw")

    # -- schema -------------------------------------------------------------------------

    @property
    def schema_version(self) -> int:
        return int(self.db.execute("PRAGMA user_version").fetchone()[0])

    def migrate(self) -> None:
        """Apply every migration newer than the DB, each in its own transaction."""
        have = self.schema_version
        if have > len(MIGRATIONS):
            raise StoreError(
                f"{self.path} has schema v{have}, this panicgw knows up to v{len(MIGRATIONS)}:"
                " upgrade panicgw"
            )
        if have == len(MIGRATIONS):
            return
        # Foreign keys off while migrating (SQLite's procedure for rebuilding a table: with
        # them on, dropping the old events table would cascade into receptions; the rebuild
        # keeps every id, so every reference still holds). The pragma is a no-op inside a
        # transaction, hence here.
        fk = int(self.db.execute("PRAGMA foreign_keys").fetchone()[0])
        self.db.execute("PRAGMA foreign_keys=OFF")
        try:
            for version in range(have + 1, len(MIGRATIONS) + 1):
                self.db.execute("BEGIN IMMEDIATE")
                try:
                    for stmt in MIGRATIONS[version - 1].split(";"):
                        if stmt.strip():
                            self.db.execute(stmt)
                    self.db.execute(f"PRAGMA user_version={version}")
                    self.db.execute("COMMIT")
                except BaseException:
                    self.db.execute("ROLLBACK")
                    raise
        finally:
            self.db.execute(f"PRAGMA foreign_keys={'ON' if fk else 'OFF'}")

    def close(self) -> None:
        self.db.close()

    def checkpoint(self) -> tuple[int, int, int]:
        """PASSIVE WAL checkpoint: copies committed pages into the DB without blocking
        writers. Returns (busy, wal pages, pages checkpointed)."""
        row = self.db.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        return int(row[0]), int(row[1]), int(row[2])

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        """BEGIN IMMEDIATE ... COMMIT (durable on return); ROLLBACK on any exception."""
        if self._in_tx:
            yield self.db
            return
        self.db.execute("BEGIN IMMEDIATE")
        self._in_tx = True
        try:
            yield self.db
        except BaseException:
            self._in_tx = False
            self.db.execute("ROLLBACK")
            raise
        self._in_tx = False
        self.db.execute("COMMIT")

    # -- meta -----------------------------------------------------------------------------

    def get_meta(self, key: str, default: str | None = None) -> str | None:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_meta(self, key: str, value: str) -> None:
        self.db.execute(
            "INSERT INTO meta (key, value) VALUES (?, ?) "
            "ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            (key, value),
        )

    def registry_generation(self) -> int:
        """Bumped by every registry change, so a running daemon knows to reload."""
        return int(self.get_meta("registry_generation", "0") or 0)

    def _bump_generation(self) -> None:
        self.set_meta("registry_generation", str(self.registry_generation() + 1))

    # -- registry ---------------------------------------------------------------------------

    def _upsert_site(self, s: SiteRecord) -> int:
        self.db.execute(
            "INSERT INTO sites (name, kind, address, lat, lon, contact, phone) "
            "VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (name, address) DO UPDATE SET "
            "kind = excluded.kind, lat = excluded.lat, lon = excluded.lon, "
            "contact = excluded.contact, phone = excluded.phone",
            (s.name, s.kind, s.address, float(s.lat), float(s.lon), s.contact, s.phone),
        )
        row = self.db.execute(
            "SELECT id FROM sites WHERE name = ? AND address = ?", (s.name, s.address)
        ).fetchone()
        return int(row[0])

    def upsert_device(self, rec: DeviceRecord, now: float | None = None, *,
                      allow_older_key: bool = False) -> None:
        """Register or update a device and its site (replay state is kept on update).

        Key generations (contract C4): replacing a stored key with one of an older
        generation, or with a different key of the same generation (a forked key), raises
        :class:`~panicgw.registry.KeyConflictError` unless ``allow_older_key``. A key that
        changes without a newer generation (the override) is stored as ``stored + 1``, so
        it is the newest from now on and the key it replaced is refused next time.

        A new device, a new key or a new supervision interval restarts supervision's
        silence count (``enrolled_at``): the installer is at the button, which starts its
        schedule anew. A re-import that changes neither (a registry sync between
        gateways) does not, or a periodic sync would hide a silent button forever.

        A new key is a rekey: the replay window starts over (:meth:`_install_key`), as the
        button's counter does when ``panictool rekey`` writes the key."""
        validate(rec)
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute(
                "SELECT key, key_gen, supervision_s, enrolled_at FROM devices "
                "WHERE device_id = ?", (rec.device_id,)).fetchone()
            key_gen, enrolled = rec.key_gen, now
            new_key = True
            if row is not None:
                old_key, old_gen, old_sup, old_enrolled = (bytes(row[0]), int(row[1]),
                                                           int(row[2]), float(row[3]))
                if mac.equal(old_key, bytes(rec.key)):
                    new_key = False
                    key_gen = max(old_gen, rec.key_gen)
                    if rec.supervision_s == old_sup:
                        enrolled = old_enrolled
                elif rec.key_gen <= old_gen:
                    if not allow_older_key:
                        raise KeyConflictError(rec.device_id, old_gen, rec.key_gen)
                    key_gen = old_gen + 1
                if new_key:
                    self._retire_key(rec.device_id, old_key, old_gen, now)
            site_id = self._upsert_site(rec.site)
            self.db.execute(
                "INSERT INTO devices (device_id, key, site_id, label, paths, supervision_s, "
                "firmware, registered_at, updated_at, key_gen, enrolled_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                "ON CONFLICT (device_id) DO UPDATE SET key = excluded.key, "
                "site_id = excluded.site_id, label = excluded.label, paths = excluded.paths, "
                "supervision_s = excluded.supervision_s, firmware = excluded.firmware, "
                "updated_at = excluded.updated_at, key_gen = excluded.key_gen, "
                "enrolled_at = excluded.enrolled_at",
                (rec.device_id, bytes(rec.key), site_id, rec.label, json.dumps(rec.paths),
                 rec.supervision_s, rec.firmware, now, now, key_gen, enrolled),
            )
            if new_key:
                self._install_key(rec.device_id, bytes(rec.key))
            else:
                self.db.execute(
                    "INSERT OR IGNORE INTO device_state (device_id) VALUES (?)",
                    (rec.device_id,))
            self._bump_generation()

    def upsert_devices(self, recs: list[DeviceRecord], *,
                       allow_older_key: bool = False) -> None:
        """All or nothing: one refused device (KeyConflictError) rolls back every one."""
        with self.transaction():
            for r in recs:
                self.upsert_device(r, allow_older_key=allow_older_key)

    _DEVICE_SELECT = (
        "SELECT d.device_id, d.key, d.label, d.paths, d.supervision_s, d.firmware, "
        "s.name, s.kind, s.address, s.lat, s.lon, s.contact, s.phone, d.key_gen "
        "FROM devices d JOIN sites s ON s.id = d.site_id"
    )

    @staticmethod
    def _device_from_row(row: tuple[Any, ...]) -> DeviceRecord:
        return DeviceRecord(
            device_id=int(row[0]),
            key=bytes(row[1]),
            label=row[2],
            paths=json.loads(row[3]),
            supervision_s=int(row[4]),
            firmware=row[5],
            site=SiteRecord(row[6], row[7], row[8], row[9], row[10], row[11], row[12]),
            key_gen=int(row[13]),
        )

    def enrolled_at(self, device_id: int) -> float | None:
        """When the device was last (re)enrolled (see :meth:`upsert_device`)."""
        row = self.db.execute("SELECT enrolled_at FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        return float(row[0]) if row else None

    def get_device(self, device_id: int) -> DeviceRecord | None:
        row = self.db.execute(
            self._DEVICE_SELECT + " WHERE d.device_id = ?", (device_id,)
        ).fetchone()
        return self._device_from_row(row) if row else None

    def list_devices(self) -> list[DeviceRecord]:
        rows = self.db.execute(self._DEVICE_SELECT + " ORDER BY d.device_id").fetchall()
        return [self._device_from_row(r) for r in rows]

    def device_keys(self) -> list[tuple[int, bytes, int, int]]:
        """(device id, key, supervision interval, key generation) of every device: the
        pipeline's cache."""
        return [(int(r[0]), bytes(r[1]), int(r[2]), int(r[3])) for r in self.db.execute(
            "SELECT device_id, key, supervision_s, key_gen FROM devices")]

    def device_key_gen(self, device_id: int) -> int | None:
        row = self.db.execute("SELECT key_gen FROM devices WHERE device_id = ?",
                              (device_id,)).fetchone()
        return int(row[0]) if row else None

    # -- key changes and the replay window ------------------------------------------------

    @staticmethod
    def _fingerprint(device_id: int, key: bytes) -> bytes:
        """What retired_keys keeps of a key: enough to recognise it, useless to sign with."""
        return hashlib.sha256(b"panicgw retired key\x00" + device_id.to_bytes(4, "big")
                              + bytes(key)).digest()[:16]

    def _retire_key(self, device_id: int, key: bytes, key_gen: int, now: float) -> None:
        """Remember the outgoing key with the replay window it has now (see
        :meth:`_install_key`). Call inside a transaction, before the key is replaced."""
        st = self.db.execute("SELECT replay_highest, replay_bitmap FROM device_state "
                             "WHERE device_id = ?", (device_id,)).fetchone()
        highest, bitmap = (int(st[0]), str(st[1])) if st else (-1, "0")
        self.db.execute(
            "INSERT INTO retired_keys (device_id, fingerprint, key_gen, replay_highest, "
            "replay_bitmap, retired_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (device_id, fingerprint) DO UPDATE SET key_gen = excluded.key_gen, "
            "replay_highest = excluded.replay_highest, replay_bitmap = excluded.replay_bitmap, "
            "retired_at = excluded.retired_at",
            (device_id, self._fingerprint(device_id, key), key_gen, highest, bitmap, now))

    def _install_key(self, device_id: int, key: bytes) -> None:
        """The replay window for a key the device now has. A key it never had before: an
        empty window, because ``panictool rekey`` restarts the button's counter with the
        new key, and no frame made with an older key passes the new key's tag, so the
        counters can be used again (events, incidents and dispatch ids carry the key
        generation, so they stay apart). A key it had before (an older export imported with
        ``--allow-older-key``, a removed device registered again): the window that key had
        when it was retired, so no frame recorded under it can be replayed; a button whose
        counter restarted under it is moved forward by RESYNC. Call inside a transaction."""
        row = self.db.execute(
            "SELECT replay_highest, replay_bitmap FROM retired_keys WHERE device_id = ? AND "
            "fingerprint = ?", (device_id, self._fingerprint(device_id, key))).fetchone()
        highest, bitmap = (int(row[0]), str(row[1])) if row else (-1, "0")
        self.db.execute(
            "INSERT INTO device_state (device_id, replay_highest, replay_bitmap) "
            "VALUES (?, ?, ?) ON CONFLICT (device_id) DO UPDATE SET "
            "replay_highest = excluded.replay_highest, replay_bitmap = excluded.replay_bitmap",
            (device_id, highest, bitmap))

    def remove_device(self, device_id: int) -> bool:
        """Unregister (its frames are rejected from now on); its events and outbox stay, and
        so does its key's replay window (retired_keys), should it be registered again."""
        with self.transaction():
            row = self.db.execute("SELECT key, key_gen FROM devices WHERE device_id = ?",
                                  (device_id,)).fetchone()
            if row is not None:
                self._retire_key(device_id, bytes(row[0]), int(row[1]), time.time())
            cur = self.db.execute("DELETE FROM devices WHERE device_id = ?", (device_id,))
            self.db.execute("DELETE FROM device_state WHERE device_id = ?", (device_id,))
            self.db.execute(
                "DELETE FROM sites WHERE id NOT IN (SELECT site_id FROM devices)"
            )
            if cur.rowcount:
                self._bump_generation()
        return cur.rowcount > 0

    def rekey(self, device_id: int, key: bytes, now: float | None = None) -> int | None:
        """Replace a device's key: its generation goes up by one, its replay window starts
        over (:meth:`_install_key`: the button's counter restarts with the new key) and
        supervision counts silence from now (the button is being rekeyed; until it has the
        new key its frames are bad_tag). Returns the new key generation; the current one,
        with nothing changed, when ``key`` is already the device's key (restarting the
        window of a key in use would let its recorded frames be replayed); None when the
        device is not registered."""
        if len(key) != 16:
            raise ValueError("key must be 16 bytes")
        now = time.time() if now is None else now
        with self.transaction():
            row = self.db.execute("SELECT key, key_gen FROM devices WHERE device_id = ?",
                                  (device_id,)).fetchone()
            if row is None:
                return None
            old_key, old_gen = bytes(row[0]), int(row[1])
            if mac.equal(old_key, bytes(key)):
                return old_gen
            self._retire_key(device_id, old_key, old_gen, now)
            self.db.execute(
                "UPDATE devices SET key = ?, updated_at = ?, enrolled_at = ?, "
                "key_gen = key_gen + 1 WHERE device_id = ?",
                (bytes(key), now, now, device_id),
            )
            self._install_key(device_id, bytes(key))
            self._bump_generation()
        return old_gen + 1

    # -- device runtime state ------------------------------------------------------------------

    def device_states(self) -> dict[int, DeviceState]:
        rows = self.db.execute(
            "SELECT device_id, replay_highest, replay_bitmap, last_heard, last_path, last_rssi, "
            "last_snr, battery_mv, low_battery, supervision, battery_alarm FROM device_state"
        ).fetchall()
        return {
            int(r[0]): DeviceState(int(r[0]), int(r[1]), int(r[2], 16), r[3], r[4], r[5], r[6],
                                   r[7], bool(r[8]), r[9], bool(r[10]))
            for r in rows
        }

    def device_state(self, device_id: int) -> DeviceState | None:
        return self.device_states_for([device_id]).get(device_id)

    def device_states_for(self, ids: list[int]) -> dict[int, DeviceState]:
        out: dict[int, DeviceState] = {}
        for i in ids:
            r = self.db.execute(
                "SELECT device_id, replay_highest, replay_bitmap, last_heard, last_path, "
                "last_rssi, last_snr, battery_mv, low_battery, supervision, battery_alarm "
                "FROM device_state WHERE device_id = ?",
                (i,),
            ).fetchone()
            if r:
                out[i] = DeviceState(int(r[0]), int(r[1]), int(r[2], 16), r[3], r[4], r[5],
                                     r[6], r[7], bool(r[8]), r[9], bool(r[10]))
        return out

    def save_replay(self, device_id: int, highest: int, bitmap: int) -> None:
        self.db.execute(
            "INSERT INTO device_state (device_id, replay_highest, replay_bitmap) VALUES (?, ?, ?)"
            " ON CONFLICT (device_id) DO UPDATE SET replay_highest = excluded.replay_highest, "
            "replay_bitmap = excluded.replay_bitmap",
            (device_id, highest, format(bitmap, "x")),
        )

    def heard(self, device_id: int, at: float, path: str, rssi: float | None,
              snr: float | None, battery_mv: int, low_battery: bool) -> None:
        self.db.execute(
            "UPDATE device_state SET last_heard = ?, last_path = ?, last_rssi = ?, "
            "last_snr = ?, battery_mv = ?, low_battery = ? WHERE device_id = ?",
            (at, path, rssi, snr, battery_mv, int(low_battery), device_id),
        )

    def set_supervision(self, device_id: int, supervision: str | None = None,
                        battery_alarm: bool | None = None) -> None:
        if supervision is not None:
            self.db.execute(
                "UPDATE device_state SET supervision = ? WHERE device_id = ?",
                (supervision, device_id),
            )
        if battery_alarm is not None:
            self.db.execute(
                "UPDATE device_state SET battery_alarm = ? WHERE device_id = ?",
                (int(battery_alarm), device_id),
            )

    # -- events, incidents ------------------------------------------------------------------------

    def insert_event(self, device_id: int, counter: int, kind: str, incident_id: str | None,
                     at: float, attempt: int, flags: int, battery_mv: int, frame: bytes,
                     key_gen: int = 1) -> int:
        """Store one accepted frame; ``key_gen``: the key generation it was verified with
        (a rekey restarts the counter, so (device, counter) alone is not unique)."""
        cur = self.db.execute(
            "INSERT INTO events (device_id, counter, kind, incident_id, received_at, attempt, "
            "flags, battery_mv, frame, key_gen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (device_id, counter, kind, incident_id, at, attempt, flags, battery_mv, frame,
             key_gen),
        )
        return int(cur.lastrowid or 0)

    def find_event(self, device_id: int, counter: int,
                   key_gen: int | None = None) -> tuple[int, str | None] | None:
        """(event id, incident id) of the stored frame (device, key generation, counter):
        the dedupe key. ``key_gen`` None: the device's current generation (1 when it is
        not registered). An event of another generation is another frame: the counter
        restarted with the key."""
        if key_gen is None:
            key_gen = self.device_key_gen(device_id) or 1
        row = self.db.execute(
            "SELECT id, incident_id FROM events WHERE device_id = ? AND counter = ? "
            "AND key_gen = ?",
            (device_id, counter, key_gen),
        ).fetchone()
        return (int(row[0]), row[1]) if row else None

    def dispatch_confirmed(self, event_id: int, incident_id: str | None) -> bool:
        """True when the event's dispatch message was delivered (dispatch answered 2xx):
        what a re-ACK's DELIVERED status promises (docs/protocol.md). Uses the incident
        index; an event without an incident (a heartbeat) has nothing to deliver."""
        if incident_id is None:
            return False
        row = self.db.execute(
            "SELECT 1 FROM outbox WHERE incident_id = ? AND event_id = ? "
            "AND state = 'delivered' LIMIT 1", (incident_id, event_id)).fetchone()
        return row is not None

    def add_reception(self, event_id: int, path: str, rssi: float | None, snr: float | None,
                      at: float, duplicate: bool) -> None:
        self.db.execute(
            "INSERT INTO receptions (event_id, path, rssi, snr, at, duplicate) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (event_id, path, rssi, snr, at, int(duplicate)),
        )

    def receptions(self, event_id: int) -> list[dict[str, Any]]:
        rows = self.db.execute(
            "SELECT path, rssi, snr, at, duplicate FROM receptions WHERE event_id = ? "
            "ORDER BY id",
            (event_id,),
        ).fetchall()
        return [{"path": r[0], "rssi": r[1], "snr": r[2], "at": r[3], "duplicate": bool(r[4])}
                for r in rows]

    def open_incident(
        self, device_id: int, kind: str, since: float, key_gen: int = 1
    ) -> tuple[str, float, int] | None:
        """The device's latest incident of ``kind`` and key generation heard at or after
        ``since`` (presses under a new key never join an incident of the old one: its id
        names the old generation's counter)."""
        row = self.db.execute(
            "SELECT incident_id, first_heard, press_count FROM incidents "
            "WHERE device_id = ? AND kind = ? AND last_heard >= ? AND key_gen = ? "
            "ORDER BY last_heard DESC LIMIT 1",
            (device_id, kind, since, key_gen),
        ).fetchone()
        return (row[0], float(row[1]), int(row[2])) if row else None

    def create_incident(self, incident_id: str, device_id: int | None, kind: str,
                        at: float, key_gen: int = 1) -> None:
        self.db.execute(
            "INSERT INTO incidents (incident_id, device_id, kind, first_heard, last_heard, "
            "press_count, key_gen) VALUES (?, ?, ?, ?, ?, 1, ?)",
            (incident_id, device_id, kind, at, at, key_gen),
        )

    def touch_incident(self, incident_id: str, at: float) -> int:
        """Count one more press; returns the new press count."""
        self.db.execute(
            "UPDATE incidents SET last_heard = ?, press_count = press_count + 1 "
            "WHERE incident_id = ?",
            (at, incident_id),
        )
        row = self.db.execute(
            "SELECT press_count FROM incidents WHERE incident_id = ?", (incident_id,)
        ).fetchone()
        return int(row[0])

    def incident(self, incident_id: str) -> dict[str, Any] | None:
        row = self.db.execute(
            "SELECT incident_id, device_id, kind, first_heard, last_heard, press_count "
            "FROM incidents WHERE incident_id = ?",
            (incident_id,),
        ).fetchone()
        if not row:
            return None
        keys = ("incident_id", "device_id", "kind", "first_heard", "last_heard", "press_count")
        return dict(zip(keys, row, strict=True))

    def recent_events(self, limit: int = 50, device_id: int | None = None) -> list[dict[str, Any]]:
        q = ("SELECT id, device_id, counter, kind, incident_id, received_at, battery_mv "
             "FROM events")
        args: tuple[Any, ...] = ()
        if device_id is not None:
            q += " WHERE device_id = ?"
            args = (device_id,)
        rows = self.db.execute(q + " ORDER BY id DESC LIMIT ?", (*args, limit)).fetchall()
        keys = ("id", "device_id", "counter", "kind", "incident_id", "received_at", "battery_mv")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def prune_heartbeats(self, older_than: float) -> int:
        """Drop heartbeat history older than ``older_than``; never anything with an outbox row
        that is still pending."""
        with self.transaction():
            cur = self.db.execute(
                "DELETE FROM events WHERE kind = 'heartbeat' AND received_at < ? AND NOT EXISTS "
                "(SELECT 1 FROM outbox o WHERE o.event_id = events.id AND o.state = 'pending')",
                (older_than,),
            )
        return cur.rowcount

    # -- outbox (implements forwarder.OutboxStore) ------------------------------------------------

    def enqueue(self, incident_id: str, priority: int, payload: dict[str, Any], at: float,
                event_id: int | None = None) -> int:
        cur = self.db.execute(
            "INSERT INTO outbox (incident_id, event_id, priority, payload, created_at, next_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (incident_id, event_id, priority, json.dumps(payload, separators=(",", ":")), at,
             at),
        )
        return int(cur.lastrowid or 0)

    def due(self, now: float, limit: int) -> list[OutboxItem]:
        """Pending items whose retry time has come: most urgent priority first, then oldest."""
        rows = self.db.execute(
            "SELECT id, incident_id, priority, payload, attempts, created_at FROM outbox "
            "WHERE state = 'pending' AND next_at <= ? "
            "ORDER BY priority, created_at, id LIMIT ?",
            (now, limit),
        ).fetchall()
        return [OutboxItem(int(r[0]), r[1], int(r[2]), json.loads(r[3]), int(r[4]), float(r[5]))
                for r in rows]

    def next_due_at(self) -> float | None:
        row = self.db.execute(
            "SELECT min(next_at) FROM outbox WHERE state = 'pending'"
        ).fetchone()
        return None if row[0] is None else float(row[0])

    def delivered(self, item_id: int, at: float, status: int, body: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET state = 'delivered', delivered_at = ?, http_status = ?, "
                "response = ?, attempts = attempts + 1 WHERE id = ?",
                (at, status, body[:4000], item_id),
            )

    def reschedule(self, item_id: int, at: float, error: str) -> None:
        with self.transaction():
            self.db.execute(
                "UPDATE outbox SET next_at = ?, last_error = ?, attempts = attempts + 1 "
                "WHERE id = ? AND state = 'pending'",
                (at, error[:1000], item_id),
            )

    def dead_letter(self, item_id: int, at: float, reason: str) -> None:
        with self.transaction():
            row = self.db.execute(
                "SELECT incident_id, payload FROM outbox WHERE id = ?", (item_id,)
            ).fetchone()
            if row is None:
                return
            self.db.execute(
                "UPDATE outbox SET state = 'dead', last_error = ?, attempts = attempts + 1 "
                "WHERE id = ?",
                (reason[:1000], item_id),
            )
            self.db.execute(
                "INSERT INTO dead_letters (outbox_id, incident_id, payload, reason, at) "
                "VALUES (?, ?, ?, ?, ?)",
                (item_id, row[0], row[1], reason[:1000], at),
            )

    def dead_letters(self, limit: int = 100) -> list[dict[str, Any]]:
        """Dead letters not requeued since, newest first."""
        rows = self.db.execute(
            "SELECT outbox_id, incident_id, reason, at FROM dead_letters "
            "WHERE requeued_at IS NULL ORDER BY id DESC LIMIT ?",
            (limit,),
        ).fetchall()
        return [{"outbox_id": r[0], "incident_id": r[1], "reason": r[2], "at": r[3]}
                for r in rows]

    def outbox_list(self, states: tuple[str, ...] = ("pending", "dead"),
                    limit: int = 1000) -> list[dict[str, Any]]:
        """Outbox rows in ``states`` for `panicgw outbox list`: most urgent first, then oldest.
        ``dead_at``/``dead_reason`` come from the row's latest dead letter."""
        marks = ",".join("?" * len(states))
        rows = self.db.execute(
            "SELECT o.id, o.incident_id, o.priority, o.state, o.attempts, o.created_at, "
            "o.next_at, o.last_error, o.requeues, json_extract(o.payload, '$.event'), "
            "(SELECT max(d.at) FROM dead_letters d WHERE d.outbox_id = o.id) "
            f"FROM outbox o WHERE o.state IN ({marks}) "
            "ORDER BY o.priority, o.created_at, o.id LIMIT ?",
            (*states, limit),
        ).fetchall()
        keys = ("id", "incident_id", "priority", "state", "attempts", "created_at", "next_at",
                "last_error", "requeues", "event", "dead_at")
        return [dict(zip(keys, r, strict=True)) for r in rows]

    def requeue(self, item_ids: list[int] | None, at: float) -> list[int]:
        """Move dead items (``None``: every dead item) back to pending, due at ``at``, with
        attempts reset so the forwarder's backoff starts over; their dead letters are marked
        requeued. Returns the ids moved; ids that are not dead are left alone."""
        with self.transaction():
            if item_ids is None:
                ids = [int(r[0]) for r in self.db.execute(
                    "SELECT id FROM outbox WHERE state = 'dead' ORDER BY id")]
            else:
                ids = [i for i in dict.fromkeys(item_ids) if self.db.execute(
                    "SELECT 1 FROM outbox WHERE id = ? AND state = 'dead'", (i,)).fetchone()]
            for i in ids:
                self.db.execute(
                    "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?, "
                    "requeues = requeues + 1, last_error = substr('requeued (was: ' || "
                    "coalesce(last_error, '?') || ')', 1, 1000) WHERE id = ?",
                    (at, i),
                )
                self.db.execute(
                    "UPDATE dead_letters SET requeued_at = ? WHERE outbox_id = ? "
                    "AND requeued_at IS NULL",
                    (at, i),
                )
        return ids

    def outbox_counts(self) -> dict[str, int]:
        counts = {"pending": 0, "delivered": 0, "dead": 0, "pending_alarms": 0}
        for state, n in self.db.execute("SELECT state, count(*) FROM outbox GROUP BY state"):
            counts[state] = int(n)
        row = self.db.execute(
            "SELECT count(*) FROM outbox WHERE state = 'pending' AND priority = ?", (PRIO_ALARM,)
        ).fetchone()
        counts["pending_alarms"] = int(row[0])
        return counts

    def outbox_rows(self, state: str | None = None) -> list[dict[str, Any]]:
        q = "SELECT id, incident_id, event_id, priority, payload, attempts, state FROM outbox"
        args: tuple[Any, ...] = ()
        if state:
            q += " WHERE state = ?"
            args = (state,)
        rows = self.db.execute(q + " ORDER BY id", args).fetchall()
        return [{"id": r[0], "incident_id": r[1], "event_id": r[2], "priority": r[3],
                 "payload": json.loads(r[4]), "attempts": r[5], "state": r[6]} for r in rows]

    # -- rejection counters --------------------------------------------------------------

    def add_rejections(self, counts: dict[str, int], at: float) -> None:
        for reason, n in counts.items():
            if n:
                self.db.execute(
                    "INSERT INTO rejections (reason, count, last_at) VALUES (?, ?, ?) "
                    "ON CONFLICT (reason) DO UPDATE SET count = count + excluded.count, "
                    "last_at = excluded.last_at",
                    (reason, n, at),
                )

    def rejections(self) -> dict[str, int]:
        return {r: int(n) for r, n in self.db.execute(
            "SELECT reason, count FROM rejections ORDER BY reason")}
