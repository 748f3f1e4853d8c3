-- Legato log, SQLite: the reference schema. Migrations must build exactly this.
CREATE TABLE legato_tx (
    gid TEXT PRIMARY KEY,
    mode TEXT NOT NULL,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    status TEXT NOT NULL,
    payload TEXT,
    payload_version INTEGER NOT NULL DEFAULT 1,
    options TEXT NOT NULL DEFAULT '{}',
    reason TEXT,
    stuck TEXT,
    requested TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    ended_at REAL,
    timeout_at REAL,
    next_attempt_at REAL,
    lease_owner TEXT,
    lease_expires_at REAL,
    version INTEGER NOT NULL DEFAULT 0
);

CREATE INDEX legato_tx_due ON legato_tx (next_attempt_at) WHERE ended_at IS NULL;
CREATE INDEX legato_tx_created ON legato_tx (created_at);
CREATE INDEX legato_tx_ended ON legato_tx (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX legato_tx_stuck ON legato_tx (created_at) WHERE stuck IS NOT NULL;

CREATE TABLE legato_op (
    gid TEXT NOT NULL,
    branch TEXT NOT NULL,
    op TEXT NOT NULL,
    seq INTEGER NOT NULL,
    target TEXT NOT NULL,
    status TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    budget INTEGER NOT NULL DEFAULT 0,
    next_at REAL,
    output TEXT,
    error TEXT,
    completed INTEGER,
    updated_at REAL NOT NULL,
    payload TEXT,
    PRIMARY KEY (gid, branch, op)
);

CREATE TABLE legato_event (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    gid TEXT NOT NULL,
    at REAL NOT NULL,
    kind TEXT NOT NULL,
    branch TEXT,
    op TEXT,
    attempt INTEGER,
    detail TEXT NOT NULL DEFAULT '{}'
);

CREATE INDEX legato_event_gid ON legato_event (gid, id);

-- The dashboard's sessions (a SHA-256 of each session id, and its expiry).
CREATE TABLE legato_session (
    digest TEXT PRIMARY KEY,
    expires_at REAL NOT NULL
);

CREATE INDEX legato_session_expires ON legato_session (expires_at);

-- This log's deployment: a random id made as the log is created (XA xids carry it).
CREATE TABLE legato_deployment (
    id TEXT PRIMARY KEY
);
INSERT INTO legato_deployment (id) VALUES (lower(hex(randomblob(16))));
