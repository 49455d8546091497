-- The console's database. Applied once, in order, by panicconsole.db (PRAGMA user_version).

CREATE TABLE users (
    id INTEGER PRIMARY KEY,
    username TEXT NOT NULL UNIQUE COLLATE NOCASE,
    display_name TEXT NOT NULL DEFAULT '',
    role TEXT NOT NULL CHECK (role IN ('operator', 'supervisor', 'admin')),
    pw_hash TEXT NOT NULL,
    lang TEXT NOT NULL DEFAULT 'id' CHECK (lang IN ('id', 'en')),
    disabled INTEGER NOT NULL DEFAULT 0,
    created_at REAL NOT NULL,
    pw_changed_at REAL NOT NULL
);

-- Sessions survive a console restart (operators' screens come back); only the SHA-256 of
-- the cookie is stored.
CREATE TABLE sessions (
    token_hash TEXT PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    csrf TEXT NOT NULL,
    created_at REAL NOT NULL,
    last_seen REAL NOT NULL,
    remote TEXT NOT NULL DEFAULT ''
);

-- Every request to the dispatch endpoint with its verdict (refusals included).
CREATE TABLE receipts (
    id INTEGER PRIMARY KEY,
    at REAL NOT NULL,
    status INTEGER NOT NULL,
    verdict TEXT NOT NULL,
    idempotency_key TEXT,
    gateway TEXT,
    attempt TEXT,
    remote TEXT,
    errors TEXT NOT NULL DEFAULT '[]',
    body TEXT
);
CREATE INDEX receipts_at ON receipts(at);

-- Accepted documents, one per Idempotency-Key (kept [dispatch] keep_days, at least 7).
CREATE TABLE messages (
    id INTEGER PRIMARY KEY,
    idempotency_key TEXT NOT NULL UNIQUE,
    received_at REAL NOT NULL,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    test INTEGER NOT NULL,
    gateway_id TEXT NOT NULL,
    site_key TEXT,
    device_id TEXT,
    alarm_id INTEGER,
    body TEXT NOT NULL
);
CREATE INDEX messages_received ON messages(received_at);
CREATE INDEX messages_site ON messages(site_key, received_at);

CREATE TABLE sites (
    site_key TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    kind TEXT NOT NULL,
    address TEXT NOT NULL DEFAULT '',
    lat REAL,
    lon REAL,
    contact TEXT NOT NULL DEFAULT '',
    phone TEXT NOT NULL DEFAULT '',
    source TEXT NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX sites_name ON sites(name COLLATE NOCASE);

CREATE TABLE devices (
    device_id TEXT PRIMARY KEY,
    site_key TEXT,
    label TEXT NOT NULL DEFAULT '',
    firmware TEXT,
    battery_mv INTEGER,
    low_battery INTEGER,
    paths TEXT NOT NULL DEFAULT '[]',
    last_heard REAL,
    last_paths TEXT NOT NULL DEFAULT '[]',
    updated_at REAL NOT NULL
);
CREATE INDEX devices_site ON devices(site_key);

CREATE TABLE gateways (
    gateway_id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    lat REAL,
    lon REAL,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL,
    last_checkin REAL,
    bridge_trouble INTEGER NOT NULL DEFAULT 0,
    trouble_since REAL,
    trouble_detail TEXT NOT NULL DEFAULT '',
    silent INTEGER NOT NULL DEFAULT 0,
    site_lat_sum REAL NOT NULL DEFAULT 0,
    site_lon_sum REAL NOT NULL DEFAULT 0,
    site_n INTEGER NOT NULL DEFAULT 0
);

-- One line of the operators' queue. ``steps`` is the action plan copied when the line opened
-- (with who ticked what); ``version`` grows with every change the screens must show.
CREATE TABLE alarms (
    id INTEGER PRIMARY KEY,
    incident_id TEXT NOT NULL,
    event TEXT NOT NULL,
    category TEXT NOT NULL,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('open', 'closed')),
    site_key TEXT,
    device_id TEXT,
    gateway_id TEXT NOT NULL,
    contact_id TEXT NOT NULL DEFAULT '',
    site TEXT,
    device TEXT,
    paths TEXT NOT NULL DEFAULT '[]',
    press_count INTEGER NOT NULL DEFAULT 1,
    first_heard TEXT,
    last_heard TEXT,
    opened_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    owner_id INTEGER REFERENCES users(id),
    taken_at REAL,
    escalation TEXT,
    escalated_at REAL,
    restored_at REAL,
    cancel_at REAL,
    steps TEXT NOT NULL DEFAULT '[]',
    disposition TEXT,
    note TEXT,
    closed_at REAL,
    closed_by INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    version INTEGER NOT NULL DEFAULT 1
);
CREATE UNIQUE INDEX alarms_open_incident ON alarms(incident_id) WHERE state = 'open';
CREATE INDEX alarms_state ON alarms(state, priority, opened_at);
CREATE INDEX alarms_site ON alarms(site_key, opened_at);

CREATE TABLE plans (
    id INTEGER PRIMARY KEY,
    site_key TEXT NOT NULL DEFAULT '*',
    event TEXT NOT NULL,
    steps TEXT NOT NULL,
    updated_at REAL NOT NULL,
    updated_by TEXT NOT NULL,
    UNIQUE (site_key, event)
);

-- Who did what and when. Append-only: the triggers refuse any UPDATE or DELETE.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    username TEXT NOT NULL,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    alarm_id INTEGER,
    detail TEXT NOT NULL DEFAULT '',
    remote TEXT NOT NULL DEFAULT ''
);
CREATE INDEX audit_alarm ON audit(alarm_id, seq);
CREATE TRIGGER audit_no_update BEFORE UPDATE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;
CREATE TRIGGER audit_no_delete BEFORE DELETE ON audit
BEGIN SELECT RAISE(ABORT, 'audit is append-only'); END;

-- The live feed: every change operators' screens must show, numbered. A browser that
-- reconnects asks for everything after the last number it saw.
CREATE TABLE changes (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    data TEXT NOT NULL
);

CREATE TABLE meta (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
