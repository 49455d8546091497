"""The gateway DB's schema: every migration, and applying them.

Each entry of :data:`MIGRATIONS` upgrades the schema by one version (``PRAGMA user_version``).
Never edit a shipped entry: append a new one. Only the daemon's writer (and ``panicgw setup``)
migrates; tools refuse a file without the schema (:func:`check`).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from panicgw.store.errors import USE_THE_GATEWAYS_DB, StoreError

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
    # v5: delivery routes beside dispatch (issue 13, SIA DC-09). The outbox row's own state
    # stays the JSON dispatch route, unchanged; every other route (``sia:<name>``) has a row
    # per outbox item here, written in the same transaction as the item. ``seq`` is the
    # item's DC-09 sequence number, stored before its first send so every resend (after a
    # restart too) carries it; route_sequences holds each route's last number handed out.
    """
    CREATE TABLE outbox_routes (
        outbox_id INTEGER NOT NULL REFERENCES outbox(id) ON DELETE CASCADE,
        route TEXT NOT NULL,
        state TEXT NOT NULL DEFAULT 'pending'
            CHECK (state IN ('pending', 'delivered', 'dead')),
        attempts INTEGER NOT NULL DEFAULT 0,
        next_at REAL NOT NULL,
        seq INTEGER,
        delivered_at REAL,
        last_error TEXT,
        PRIMARY KEY (outbox_id, route)
    );
    CREATE INDEX outbox_routes_due ON outbox_routes (route, next_at) WHERE state = 'pending';
    CREATE TABLE route_sequences (route TEXT PRIMARY KEY, last INTEGER NOT NULL)
    """,
]


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def check(db: sqlite3.Connection, path: Path) -> None:
    """Refuse a file that is not a gateway DB (or one this panicgw cannot read)."""
    have = version(db)
    if have == 0:
        raise StoreError(f"{path} is not a gateway DB (no panicgw schema): "
                         f"{USE_THE_GATEWAYS_DB}")
    if have > len(MIGRATIONS):
        raise StoreError(f"{path} has schema v{have}, this panicgw knows up to "
                         f"v{len(MIGRATIONS)}: upgrade panicgw")


def migrate(db: sqlite3.Connection, path: Path) -> None:
    """Apply every migration newer than the DB, each in its own transaction."""
    have = version(db)
    if have > len(MIGRATIONS):
        raise StoreError(
            f"{path} has schema v{have}, this panicgw knows up to v{len(MIGRATIONS)}:"
            " upgrade panicgw"
        )
    if have == len(MIGRATIONS):
        return
    # Foreign keys off while migrating (SQLite's procedure for rebuilding a table: with
    # them on, dropping the old events table would cascade into receptions; the rebuild
    # keeps every id, so every reference still holds). The pragma is a no-op inside a
    # transaction, hence here.
    fk = int(db.execute("PRAGMA foreign_keys").fetchone()[0])
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        for v in range(have + 1, len(MIGRATIONS) + 1):
            db.execute("BEGIN IMMEDIATE")
            try:
                for stmt in MIGRATIONS[v - 1].split(";"):
                    if stmt.strip():
                        db.execute(stmt)
                db.execute(f"PRAGMA user_version={v}")
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
    finally:
        db.execute(f"PRAGMA foreign_keys={'ON' if fk else 'OFF'}")
