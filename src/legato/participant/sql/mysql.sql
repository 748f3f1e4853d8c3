-- The barrier, MySQL / MariaDB. Parameters are :named, rendered for each driver on load.

-- name: create_table
-- utf8mb4_bin: gids compare byte for byte (the default collation would make 'A1' and
-- 'a1' the same transaction).
CREATE TABLE IF NOT EXISTS legato_barrier (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    trans_type varchar(45) NOT NULL,
    gid varchar(128) NOT NULL,
    branch_id varchar(128) NOT NULL,
    op varchar(45) NOT NULL,
    barrier_id varchar(45) NOT NULL,
    reason varchar(45) NOT NULL,
    created_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    UNIQUE KEY legato_barrier_key (gid, branch_id, op, barrier_id),
    KEY legato_barrier_created_at (created_at)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin

-- name: insert
-- Insert-or-ignore. INSERT IGNORE also turns other errors (a value too long) into
-- warnings; Barrier validates every value first, so only the duplicate key is ignored.
-- A conflicting row not committed yet makes this wait for its transaction to end.
INSERT IGNORE INTO legato_barrier (trans_type, gid, branch_id, op, barrier_id, reason)
VALUES (:trans_type, :gid, :branch_id, :op, :barrier_id, :reason)

-- name: reason
SELECT reason FROM legato_barrier
WHERE gid = :gid AND branch_id = :branch_id AND op = :op AND barrier_id = :barrier_id

-- name: purge
DELETE FROM legato_barrier
WHERE created_at < NOW(6) - INTERVAL :age SECOND
ORDER BY created_at
LIMIT :limit
