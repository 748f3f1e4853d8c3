-- Legato log, PostgreSQL: the reference schema. Migrations must build exactly this.
CREATE TABLE legato_tx (
    gid text PRIMARY KEY,
    mode text NOT NULL,
    name text NOT NULL,
    fingerprint text NOT NULL,
    status text NOT NULL,
    payload text,
    payload_version integer NOT NULL DEFAULT 1,
    options text NOT NULL DEFAULT '{}',
    reason text,
    stuck text,
    requested text,
    created_at double precision NOT NULL,
    updated_at double precision NOT NULL,
    ended_at double precision,
    timeout_at double precision,
    next_attempt_at double precision,
    lease_owner text,
    lease_expires_at double precision,
    version bigint NOT NULL DEFAULT 0
);

CREATE INDEX legato_tx_due ON legato_tx (next_attempt_at) WHERE ended_at IS NULL;
CREATE INDEX legato_tx_created ON legato_tx (created_at);
CREATE INDEX legato_tx_ended ON legato_tx (ended_at) WHERE ended_at IS NOT NULL;
CREATE INDEX legato_tx_stuck ON legato_tx (created_at) WHERE stuck IS NOT NULL;

CREATE TABLE legato_op (
    gid text NOT NULL,
    branch text NOT NULL,
    op text NOT NULL,
    seq integer NOT NULL,
    target text NOT NULL,
    status text NOT NULL,
    attempts integer NOT NULL DEFAULT 0,
    budget integer NOT NULL DEFAULT 0,
    next_at double precision,
    output text,
    error text,
    completed integer,
    updated_at double precision NOT NULL,
    payload text,
    PRIMARY KEY (gid, branch, op)
);

CREATE TABLE legato_event (
    id bigserial PRIMARY KEY,
    gid text NOT NULL,
    at double precision NOT NULL,
    kind text NOT NULL,
    branch text,
    op text,
    attempt integer,
    detail text NOT NULL DEFAULT '{}'
);

CREATE INDEX legato_event_gid ON legato_event (gid, id);

-- The dashboard's sessions (a SHA-256 of each session id, and its expiry).
CREATE TABLE legato_session (
    digest text PRIMARY KEY,
    expires_at double precision NOT NULL
);

CREATE INDEX legato_session_expires ON legato_session (expires_at);

-- This log's deployment: a random id made as the log is created (XA xids carry it).
CREATE TABLE legato_deployment (
    id text PRIMARY KEY
);
INSERT INTO legato_deployment (id) VALUES (replace(CAST(gen_random_uuid() AS text), '-', ''));
