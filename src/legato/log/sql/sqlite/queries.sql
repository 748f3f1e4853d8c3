-- Legato log queries, SQLite. Parameters are :named.

-- name: insert_tx
INSERT INTO legato_tx (gid, mode, name, fingerprint, status, payload, payload_version, options,
    reason, stuck, created_at, updated_at, timeout_at, next_attempt_at, lease_owner,
    lease_expires_at, version)
VALUES (:gid, :mode, :name, :fingerprint, :status, :payload, :payload_version, :options,
    :reason, :stuck, :created_at, :updated_at, :timeout_at, :next_attempt_at, :lease_owner,
    :lease_expires_at, 1)
ON CONFLICT (gid) DO NOTHING

-- name: insert_op
INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at, output,
    error, completed, updated_at, payload)
VALUES (:gid, :branch, :op, :seq, :target, :status, :attempts, :budget, :next_at, :output,
    :error, :completed, :updated_at, :payload)

-- name: insert_event
INSERT INTO legato_event (gid, at, kind, branch, op, attempt, detail)
VALUES (:gid, :at, :kind, :branch, :op, :attempt, :detail)

-- name: write_tx
-- Fenced: only the lease owner's write lands (zero rows means the lease is lost).
-- A release leaves it due at once if a request came in that this write does not answer.
UPDATE legato_tx SET status = :status, reason = :reason, stuck = :stuck,
    next_attempt_at = CASE WHEN :release AND :ended_at IS NULL AND requested IS NOT NULL
        AND requested IS NOT :handled THEN :at ELSE :next_attempt_at END,
    updated_at = :at, ended_at = :ended_at,
    version = version + 1,
    lease_owner = CASE WHEN :release THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN :release THEN NULL ELSE lease_expires_at END,
    requested = CASE WHEN requested = :handled THEN NULL ELSE requested END
WHERE gid = :gid AND lease_owner = :owner

-- name: update_op
UPDATE legato_op SET status = :status, attempts = :attempts, budget = :budget,
    next_at = :next_at, output = :output, error = :error, completed = :completed,
    updated_at = :updated_at
WHERE gid = :gid AND branch = :branch AND op = :op

-- name: claim
-- SQLite has one writer at a time, so the sub-select and the update cannot race.
-- then claim_take, in the same transaction. ``previous`` is the owner whose lease had
-- expired (a takeover), or NULL (SQLite's RETURNING sees only the new row).
SELECT gid, requested, lease_owner AS previous FROM legato_tx
WHERE ended_at IS NULL AND next_attempt_at <= :now
    AND (lease_owner IS NULL OR lease_expires_at < :now)
    AND (:any_name OR name IN (SELECT value FROM json_each(:names)))
ORDER BY next_attempt_at
LIMIT :limit

-- name: claim_take
UPDATE legato_tx SET lease_owner = :owner, lease_expires_at = :until
WHERE gid IN (SELECT value FROM json_each(:gids))

-- name: renew
-- Only the gids named: a lease its coordinator no longer drives (its runner stopped on
-- a log error) must expire, so that a claim resumes the transaction.
UPDATE legato_tx SET lease_expires_at = :until
WHERE lease_owner = :owner AND ended_at IS NULL
    AND gid IN (SELECT value FROM json_each(:gids))
RETURNING gid, requested

-- name: release
UPDATE legato_tx SET lease_owner = NULL, lease_expires_at = NULL,
    next_attempt_at = :next_attempt_at
WHERE gid = :gid AND lease_owner = :owner

-- name: release_owner
UPDATE legato_tx SET lease_owner = NULL, lease_expires_at = NULL
WHERE lease_owner = :owner AND ended_at IS NULL

-- name: request
UPDATE legato_tx SET requested = :what, next_attempt_at = :now
WHERE gid = :gid AND ended_at IS NULL

-- name: request_claim
-- The request, and the lease for :owner where no live owner holds it (the right-hand
-- sides all read the row as it was before this update).
UPDATE legato_tx SET requested = :what, next_attempt_at = :now,
    lease_owner = CASE WHEN lease_owner IS NULL OR lease_expires_at < :now
        THEN :owner ELSE lease_owner END,
    lease_expires_at = CASE WHEN lease_owner IS NULL OR lease_expires_at < :now
        THEN :until ELSE lease_expires_at END
WHERE gid = :gid AND ended_at IS NULL

-- name: get_tx
SELECT * FROM legato_tx WHERE gid = :gid

-- name: get_ops
SELECT * FROM legato_op WHERE gid = :gid ORDER BY seq, op

-- name: get_txs
-- Many at once (a claim's batch, read back in one go).
SELECT * FROM legato_tx WHERE gid IN (SELECT value FROM json_each(:gids))

-- name: get_ops_of
SELECT * FROM legato_op WHERE gid IN (SELECT value FROM json_each(:gids)) ORDER BY gid, seq, op

-- name: get_events
SELECT * FROM legato_event WHERE gid = :gid ORDER BY id

-- name: list_tx
SELECT * FROM legato_tx
WHERE (:any_status OR status IN (SELECT value FROM json_each(:statuses)))
    AND (:mode IS NULL OR mode = :mode)
    AND (:name IS NULL OR name = :name)
    AND (:stuck IS NULL OR (stuck IS NOT NULL) = :stuck)
    AND (:since IS NULL OR created_at >= :since)
    AND (:until IS NULL OR created_at < :until)
    AND (:search IS NULL OR instr(gid, :search) > 0)
ORDER BY created_at DESC, gid
LIMIT :limit OFFSET :offset

-- name: list_stuck
-- list_tx's stuck ones only (the dashboard shows them above every page): through the
-- partial index legato_tx_stuck, however many transactions the log keeps.
SELECT * FROM legato_tx
WHERE stuck IS NOT NULL
    AND (:any_status OR status IN (SELECT value FROM json_each(:statuses)))
    AND (:mode IS NULL OR mode = :mode)
    AND (:name IS NULL OR name = :name)
    AND (:since IS NULL OR created_at >= :since)
    AND (:until IS NULL OR created_at < :until)
    AND (:search IS NULL OR instr(gid, :search) > 0)
ORDER BY created_at DESC, gid
LIMIT :limit OFFSET :offset

-- name: count_by_status
-- Every transaction the log holds: a scan of the whole table (legato tx, tests).
SELECT status, count(*) AS n FROM legato_tx GROUP BY status

-- name: count_unfinished
-- The unended ones only, through the partial index legato_tx_due: cheap however many
-- ended transactions the log keeps (the dashboard's header, /health, the metrics).
SELECT status, count(*) AS n FROM legato_tx WHERE ended_at IS NULL GROUP BY status

-- name: count_stuck
SELECT count(*) AS n FROM legato_tx WHERE stuck IS NOT NULL AND ended_at IS NULL

-- name: oldest_unfinished
-- INDEXED BY: without statistics SQLite may walk legato_tx_created from the oldest
-- row and step over every ended transaction before the oldest unended one.
SELECT min(created_at) AS t FROM legato_tx INDEXED BY legato_tx_due WHERE ended_at IS NULL

-- name: unclaimed
-- Due before :before (now less the grace) and held by no coordinator: no one running
-- claims the name. Through the partial index legato_tx_due, the overdue rows only.
-- INDEXED BY, as oldest_unfinished: the due index, not a scan.
SELECT mode, name, count(*) AS n, min(next_attempt_at) AS due_since
FROM legato_tx INDEXED BY legato_tx_due WHERE ended_at IS NULL AND next_attempt_at <= :before
    AND (lease_owner IS NULL OR lease_expires_at < :before)
GROUP BY mode, name
ORDER BY n DESC, name, mode
LIMIT :limit

-- name: count_started_since
SELECT count(*) AS n FROM legato_tx WHERE created_at >= :since

-- name: count_ended_since
SELECT status, count(*) AS n FROM legato_tx WHERE ended_at >= :since GROUP BY status

-- name: purgeable
SELECT gid FROM legato_tx WHERE ended_at IS NOT NULL AND ended_at < :before
ORDER BY ended_at LIMIT :limit

-- name: purge_events
DELETE FROM legato_event WHERE gid IN (SELECT value FROM json_each(:gids))

-- name: purge_ops
DELETE FROM legato_op WHERE gid IN (SELECT value FROM json_each(:gids))

-- name: purge_tx
DELETE FROM legato_tx WHERE gid IN (SELECT value FROM json_each(:gids))

-- name: register_op
-- A branch's op joins a transaction only while it is prepared and no coordinator holds
-- it: once one has claimed it (to submit, abort or time it out) its set of branches is
-- the one it loaded, and a branch registered later would never be confirmed or cancelled.
INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at, output,
    error, completed, updated_at, payload)
SELECT gid, :branch, :op, :seq, :target, :status, 0, 0, NULL, NULL, NULL, NULL, :updated_at,
    :payload
FROM legato_tx
WHERE gid = :gid AND status = 'prepared'
    AND (lease_owner IS NULL OR lease_expires_at < :now)
ON CONFLICT (gid, branch, op) DO NOTHING

-- name: next_seq
SELECT COALESCE(MAX(seq), -1) + 1 AS n FROM legato_op WHERE gid = :gid

-- name: session_start
INSERT INTO legato_session (digest, expires_at) VALUES (:digest, :expires_at)

-- name: session_forget_expired
DELETE FROM legato_session WHERE expires_at < :now

-- name: session_valid
SELECT 1 AS ok FROM legato_session WHERE digest = :digest AND expires_at >= :now

-- name: session_end
DELETE FROM legato_session WHERE digest = :digest

-- name: deployment
SELECT id FROM legato_deployment ORDER BY id LIMIT 1

-- name: schema_version
SELECT MAX(version) AS version FROM legato_migrations

-- name: signal_op
-- A signal kept for a workflow that has not ended; the same signal (branch) again: nothing.
INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at, output,
    error, completed, updated_at, payload)
SELECT gid, :branch, :op, :seq, :target, :status, 0, 0, NULL, :output, NULL, NULL, :updated_at,
    NULL
FROM legato_tx
WHERE gid = :gid AND ended_at IS NULL AND mode = 'workflow'
ON CONFLICT (gid, branch, op) DO NOTHING

-- name: signal_tx
-- Due now, with the request 'signal' unless another is pending; with :owner, the lease
-- where no live owner holds it (as request_claim).
UPDATE legato_tx SET requested = COALESCE(requested, 'signal'), next_attempt_at = :now,
    lease_owner = CASE WHEN CAST(:owner AS text) IS NOT NULL
        AND (lease_owner IS NULL OR lease_expires_at < :now) THEN :owner ELSE lease_owner END,
    lease_expires_at = CASE WHEN CAST(:owner AS text) IS NOT NULL
        AND (lease_owner IS NULL OR lease_expires_at < :now) THEN :until ELSE lease_expires_at END
WHERE gid = :gid AND ended_at IS NULL
