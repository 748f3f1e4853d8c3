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

-- The transactional outbox.

-- name: outbox_create
-- legato_outbox_key numbers each (topic, key)'s events: taking the next number locks
-- the key's row until the business transaction ends, so one key's events commit in
-- the order of their numbers, and a number is never skipped (a rollback returns it).
CREATE TABLE IF NOT EXISTS legato_outbox_key (
    topic varchar(100) NOT NULL,
    msg_key varchar(200) NOT NULL,
    last_seq bigint NOT NULL,
    PRIMARY KEY (topic, msg_key)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin;
CREATE TABLE IF NOT EXISTS legato_outbox (
    id bigint NOT NULL AUTO_INCREMENT PRIMARY KEY,
    topic varchar(100) NOT NULL,
    msg_key varchar(200) NOT NULL,
    seq bigint NOT NULL,
    message_id varchar(128) NOT NULL,
    body longblob NOT NULL,
    headers text NOT NULL,
    created_at datetime(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
    sent_at datetime(6) NULL,
    UNIQUE KEY legato_outbox_message (message_id),
    UNIQUE KEY legato_outbox_order (topic, msg_key, seq),
    KEY legato_outbox_unsent (sent_at, id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4 COLLATE=utf8mb4_bin

-- name: outbox_next_seq
INSERT INTO legato_outbox_key (topic, msg_key, last_seq) VALUES (:topic, :key, 1)
ON DUPLICATE KEY UPDATE last_seq = last_seq + 1

-- name: outbox_seq
SELECT last_seq FROM legato_outbox_key WHERE topic = :topic AND msg_key = :key

-- name: outbox_insert
INSERT INTO legato_outbox (topic, msg_key, seq, message_id, body, headers)
VALUES (:topic, :key, :seq, :message_id, UNHEX(:body_hex), :headers)

-- name: outbox_pending
SELECT id, topic, msg_key, seq, message_id, body, headers FROM legato_outbox
WHERE sent_at IS NULL ORDER BY id LIMIT :limit

-- name: outbox_sent
UPDATE legato_outbox SET sent_at = CURRENT_TIMESTAMP(6) WHERE id = :id

-- name: outbox_purge
DELETE FROM legato_outbox
WHERE sent_at < CURRENT_TIMESTAMP(6) - INTERVAL :age SECOND
ORDER BY id
LIMIT :limit
