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
