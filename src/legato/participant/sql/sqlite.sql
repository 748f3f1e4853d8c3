-- The barrier, SQLite. Parameters are :named, rendered for each driver on load.

-- name: create_table
CREATE TABLE IF NOT EXISTS legato_barrier (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    trans_type TEXT NOT NULL,
    gid TEXT NOT NULL,
    branch_id TEXT NOT NULL,
    op TEXT NOT NULL,
    barrier_id TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    UNIQUE (gid, branch_id, op, barrier_id)
);
CREATE INDEX IF NOT EXISTS legato_barrier_created_at ON legato_barrier (created_at)

-- name: insert
-- Insert-or-ignore. The barrier's transaction began IMMEDIATE, so racing requests
-- are already serialised by SQLite's write lock.
INSERT OR IGNORE INTO legato_barrier (trans_type, gid, branch_id, op, barrier_id, reason)
VALUES (:trans_type, :gid, :branch_id, :op, :barrier_id, :reason)

-- name: reason
SELECT reason FROM legato_barrier
WHERE gid = :gid AND branch_id = :branch_id AND op = :op AND barrier_id = :barrier_id

-- name: purge
-- created_at is UTC text 'YYYY-MM-DD HH:MM:SS', so text order is time order.
DELETE FROM legato_barrier WHERE id IN (
    SELECT id FROM legato_barrier
    WHERE created_at < datetime('now', '-' || :age || ' seconds')
    ORDER BY created_at
    LIMIT :limit
)

-- The transactional outbox.

-- name: outbox_create
-- legato_outbox_key numbers each (topic, key)'s events; SQLite has one writer at a
-- time, so one key's events commit in the order of their numbers.
CREATE TABLE IF NOT EXISTS legato_outbox_key (
    topic TEXT NOT NULL,
    msg_key TEXT NOT NULL,
    last_seq INTEGER NOT NULL,
    PRIMARY KEY (topic, msg_key)
);
CREATE TABLE IF NOT EXISTS legato_outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    msg_key TEXT NOT NULL,
    seq INTEGER NOT NULL,
    message_id TEXT NOT NULL UNIQUE,
    body BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP,
    sent_at TEXT,
    UNIQUE (topic, msg_key, seq)
);
CREATE INDEX IF NOT EXISTS legato_outbox_unsent ON legato_outbox (id) WHERE sent_at IS NULL

-- name: outbox_next_seq
INSERT INTO legato_outbox_key (topic, msg_key, last_seq) VALUES (:topic, :key, 1)
ON CONFLICT (topic, msg_key) DO UPDATE SET last_seq = last_seq + 1

-- name: outbox_seq
SELECT last_seq FROM legato_outbox_key WHERE topic = :topic AND msg_key = :key

-- name: outbox_insert
INSERT INTO legato_outbox (topic, msg_key, seq, message_id, body, headers)
VALUES (:topic, :key, :seq, :message_id, :body, :headers)

-- name: outbox_pending
SELECT id, topic, msg_key, seq, message_id, body, headers FROM legato_outbox
WHERE sent_at IS NULL ORDER BY id LIMIT :limit

-- name: outbox_sent
UPDATE legato_outbox SET sent_at = CURRENT_TIMESTAMP WHERE id = :id

-- name: outbox_purge
DELETE FROM legato_outbox WHERE id IN (
    SELECT id FROM legato_outbox
    WHERE sent_at < datetime('now', '-' || :age || ' seconds')
    ORDER BY id
    LIMIT :limit
)
