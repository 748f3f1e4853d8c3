-- Legato log queries, PostgreSQL. Parameters are :named (turned into psycopg's %(named)s
-- on load); a parameter that may be NULL is cast, so that PostgreSQL knows its type.

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
    next_attempt_at = CASE WHEN :release AND CAST(:ended_at AS double precision) IS NULL
        AND requested IS NOT NULL AND requested IS DISTINCT FROM CAST(:handled AS text)
        THEN :at ELSE :next_attempt_at END,
    updated_at = :at, ended_at = :ended_at,
    version = version + 1,
    lease_owner = CASE WHEN :release THEN NULL ELSE lease_owner END,
    lease_expires_at = CASE WHEN :release THEN NULL ELSE lease_expires_at END,
    requested = CASE WHEN requested = CAST(:handled AS text) THEN NULL ELSE requested END
WHERE gid = :gid AND lease_owner = :owner

-- name: update_op
UPDATE legato_op SET status = :status, attempts = :attempts, budget = :budget,
    next_at = :next_at, output = :output, error = :error, completed = :completed,
    updated_at = :updated_at
WHERE gid = :gid AND branch = :branch AND op = :op

-- name: claim
-- The one place that claims work. FOR UPDATE SKIP LOCKED: coordinators claiming at
-- the same moment each lock different rows instead of queueing behind one another;
-- a row locked by another claimer is simply not due for us this round.
-- ``previous`` is the owner whose lease had expired (a takeover), or NULL.
UPDATE legato_tx AS t SET lease_owner = :owner, lease_expires_at = :until
FROM (
    SELECT gid, lease_owner AS previous FROM legato_tx
    WHERE ended_at IS NULL AND next_attempt_at <= :now
        AND (lease_owner IS NULL OR lease_expires_at < :now)
        AND (:any_name OR name = ANY(:names))
    ORDER BY next_attempt_at
    LIMIT :limit
    FOR UPDATE SKIP LOCKED
) AS due
WHERE t.gid = due.gid
RETURNING t.gid, t.requested, due.previous

-- name: renew
-- Only the gids named: a lease its coordinator no longer drives (its runner stopped on
-- a log error) must expire, so that a claim resumes the transaction.
UPDATE legato_tx SET lease_expires_at = :until
WHERE lease_owner = :owner AND ended_at IS NULL AND gid = ANY(CAST(:gids AS text[]))
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
SELECT * FROM legato_tx WHERE gid = ANY(:gids)

-- name: get_ops_of
SELECT * FROM legato_op WHERE gid = ANY(:gids) ORDER BY gid, seq, op

-- name: get_events
SELECT * FROM legato_event WHERE gid = :gid ORDER BY id

-- name: list_tx
SELECT * FROM legato_tx
WHERE (:any_status OR status = ANY(:statuses))
    AND (CAST(:mode AS text) IS NULL OR mode = :mode)
    AND (CAST(:name AS text) IS NULL OR name = :name)
    AND (CAST(:stuck AS boolean) IS NULL OR (stuck IS NOT NULL) = CAST(:stuck AS boolean))
    AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
    AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
    AND (CAST(:search AS text) IS NULL OR strpos(gid, :search) > 0)
ORDER BY created_at DESC, gid
LIMIT :limit OFFSET :offset

-- name: list_stuck
-- list_tx's stuck ones only (the dashboard shows them above every page): through the
-- partial index legato_tx_stuck, however many transactions the log keeps.
SELECT * FROM legato_tx
WHERE stuck IS NOT NULL
    AND (:any_status OR status = ANY(:statuses))
    AND (CAST(:mode AS text) IS NULL OR mode = :mode)
    AND (CAST(:name AS text) IS NULL OR name = :name)
    AND (CAST(:since AS double precision) IS NULL OR created_at >= :since)
    AND (CAST(:until AS double precision) IS NULL OR created_at < :until)
    AND (CAST(:search AS text) IS NULL OR strpos(gid, :search) > 0)
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
SELECT min(created_at) AS t FROM legato_tx WHERE ended_at IS NULL

-- name: unclaimed
-- Due before :before (now less the grace) and held by no coordinator: no one running
-- claims the name. Through the partial index legato_tx_due, the overdue rows only.
SELECT mode, name, count(*) AS n, min(next_attempt_at) AS due_since
FROM legato_tx WHERE ended_at IS NULL AND next_attempt_at <= :before
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
DELETE FROM legato_event WHERE gid = ANY(:gids)

-- name: purge_ops
DELETE FROM legato_op WHERE gid = ANY(:gids)

-- name: purge_tx
DELETE FROM legato_tx WHERE gid = ANY(:gids)

-- name: create_all
-- A new transaction, its ops and its first events in one statement (one round trip).
WITH tx AS (
    INSERT INTO legato_tx (gid, mode, name, fingerprint, status, payload, payload_version,
        options, reason, stuck, created_at, updated_at, timeout_at, next_attempt_at,
        lease_owner, lease_expires_at, version)
    VALUES (:gid, :mode, :name, :fingerprint, :status, :payload, :payload_version, :options,
        :reason, :stuck, :created_at, :updated_at, :timeout_at, :next_attempt_at, :lease_owner,
        :lease_expires_at, 1)
    ON CONFLICT (gid) DO NOTHING
    RETURNING gid
), ops AS (
    INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at,
        output, error, completed, updated_at, payload)
    SELECT tx.gid, x.branch, x.op, x.seq, x.target, x.status, x.attempts, x.budget, x.next_at,
        x.output, x.error, x.completed, x.updated_at, x.payload
    FROM tx, jsonb_to_recordset(CAST(:ops AS jsonb)) AS x(branch text, op text, seq integer,
        target text, status text, attempts integer, budget integer, next_at double precision,
        output text, error text, completed integer, updated_at double precision, payload text)
), events AS (
    INSERT INTO legato_event (gid, at, kind, branch, op, attempt, detail)
    SELECT tx.gid, CAST(e.doc ->> 'at' AS double precision), e.doc ->> 'kind',
        e.doc ->> 'branch', e.doc ->> 'op', CAST(e.doc ->> 'attempt' AS integer),
        e.doc ->> 'detail'
    FROM tx, jsonb_array_elements(CAST(:events AS jsonb)) WITH ORDINALITY AS e(doc, n)
    ORDER BY e.n
)
SELECT count(*) AS n FROM tx

-- name: write_all
-- A group commit's creates and fenced writes as one statement, sent alone on the event
-- loop's connection (asyncpg): one round trip, atomic without BEGIN and COMMIT. The
-- creates are new gids and the writes' gids have rows already, so the two halves touch
-- disjoint rows. Returns ('c', gid) for each create that landed (a gid already taken
-- inserts nothing) and ('w', gid) for each write whose lease held.
WITH c AS (
    SELECT a.doc FROM jsonb_array_elements(CAST(:creates AS jsonb)) AS a(doc)
), tx AS (
    INSERT INTO legato_tx (gid, mode, name, fingerprint, status, payload, payload_version,
        options, reason, stuck, created_at, updated_at, timeout_at, next_attempt_at,
        lease_owner, lease_expires_at, version)
    SELECT r.gid, r.mode, r.name, r.fingerprint, r.status, r.payload, r.payload_version,
        r.options, r.reason, r.stuck, r.created_at, r.updated_at, r.timeout_at,
        r.next_attempt_at, r.lease_owner, r.lease_expires_at, 1
    FROM c, jsonb_populate_record(NULL::legato_tx, c.doc) AS r
    ON CONFLICT (gid) DO NOTHING
    RETURNING gid
), c_ops AS (
    INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at,
        output, error, completed, updated_at, payload)
    SELECT tx.gid, x.branch, x.op, x.seq, x.target, x.status, x.attempts, x.budget, x.next_at,
        x.output, x.error, x.completed, x.updated_at, x.payload
    FROM c JOIN tx ON tx.gid = c.doc ->> 'gid',
        jsonb_populate_recordset(NULL::legato_op, c.doc -> 'ops') AS x
), c_events AS (
    INSERT INTO legato_event (gid, at, kind, branch, op, attempt, detail)
    SELECT tx.gid, CAST(e.doc ->> 'at' AS double precision), e.doc ->> 'kind',
        e.doc ->> 'branch', e.doc ->> 'op', CAST(e.doc ->> 'attempt' AS integer),
        e.doc ->> 'detail'
    FROM c JOIN tx ON tx.gid = c.doc ->> 'gid',
        jsonb_array_elements(c.doc -> 'events') WITH ORDINALITY AS e(doc, n)
    ORDER BY tx.gid, e.n
), w AS (
    SELECT a.ord, a.doc ->> 'gid' AS gid, a.doc ->> 'owner' AS owner,
        CAST(a.doc ->> 'at' AS double precision) AS at, a.doc ->> 'status' AS status,
        a.doc ->> 'reason' AS reason, a.doc ->> 'stuck' AS stuck,
        CAST(a.doc ->> 'next_attempt_at' AS double precision) AS next_attempt_at,
        CAST(a.doc ->> 'ended_at' AS double precision) AS ended_at,
        CAST(a.doc ->> 'release' AS boolean) AS release, a.doc ->> 'handled' AS handled,
        a.doc -> 'ops' AS ops, a.doc -> 'events' AS events, a.doc -> 'new_ops' AS new_ops
    FROM jsonb_array_elements(CAST(:writes AS jsonb)) WITH ORDINALITY AS a(doc, ord)
), fenced AS (
    UPDATE legato_tx AS t SET status = w.status, reason = w.reason, stuck = w.stuck,
        next_attempt_at = CASE WHEN w.release AND w.ended_at IS NULL
            AND t.requested IS NOT NULL AND t.requested IS DISTINCT FROM w.handled
            THEN w.at ELSE w.next_attempt_at END,
        updated_at = w.at, ended_at = w.ended_at,
        version = t.version + 1,
        lease_owner = CASE WHEN w.release THEN NULL ELSE t.lease_owner END,
        lease_expires_at = CASE WHEN w.release THEN NULL ELSE t.lease_expires_at END,
        requested = CASE WHEN t.requested = w.handled THEN NULL ELSE t.requested END
    FROM w
    -- "= ANY" of the gids as an array, beside the join: the planner takes w for a
    -- hundred rows (a set-returning function's default), and without it prefers
    -- reading the whole table to looking each gid up in the key (measured: 0.9 ms a
    -- write at 5,000 transactions, growing with the log)
    WHERE t.gid = ANY(ARRAY(SELECT w.gid FROM w)) AND t.gid = w.gid
        AND t.lease_owner = w.owner
    RETURNING t.gid
), w_ops AS (
    UPDATE legato_op AS o SET status = x.status, attempts = x.attempts, budget = x.budget,
        next_at = x.next_at, output = x.output, error = x.error, completed = x.completed,
        updated_at = x.updated_at
    FROM (
        SELECT w.gid, r.*
        FROM w JOIN fenced ON fenced.gid = w.gid,
            jsonb_to_recordset(w.ops) AS r(branch text, op text, status text,
                attempts integer, budget integer, next_at double precision, output text,
                error text, completed integer, updated_at double precision)
    ) AS x
    WHERE o.gid = x.gid AND o.branch = x.branch AND o.op = x.op
), w_added AS (
    INSERT INTO legato_op (gid, branch, op, seq, target, status, attempts, budget, next_at,
        output, error, completed, updated_at, payload)
    SELECT w.gid, x.branch, x.op, x.seq, x.target, x.status, x.attempts, x.budget, x.next_at,
        x.output, x.error, x.completed, x.updated_at, x.payload
    FROM w JOIN fenced ON fenced.gid = w.gid,
        jsonb_to_recordset(COALESCE(w.new_ops, '[]')) AS x(branch text, op text, seq integer,
            target text, status text, attempts integer, budget integer,
            next_at double precision, output text, error text, completed integer,
            updated_at double precision, payload text)
), w_events AS (
    INSERT INTO legato_event (gid, at, kind, branch, op, attempt, detail)
    SELECT w.gid, CAST(e.doc ->> 'at' AS double precision), e.doc ->> 'kind',
        e.doc ->> 'branch', e.doc ->> 'op', CAST(e.doc ->> 'attempt' AS integer),
        e.doc ->> 'detail'
    FROM w JOIN fenced ON fenced.gid = w.gid,
        jsonb_array_elements(w.events) WITH ORDINALITY AS e(doc, n)
    ORDER BY w.ord, e.n
)
SELECT 'c' AS kind, gid FROM tx
UNION ALL
SELECT 'w' AS kind, gid FROM fenced

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
    AND (lease_owner IS NULL OR lease_expires_at < CAST(:now AS double precision))
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
        AND (lease_owner IS NULL OR lease_expires_at < CAST(:now AS double precision)) THEN :owner ELSE lease_owner END,
    lease_expires_at = CASE WHEN CAST(:owner AS text) IS NOT NULL
        AND (lease_owner IS NULL OR lease_expires_at < CAST(:now AS double precision)) THEN :until ELSE lease_expires_at END
WHERE gid = :gid AND ended_at IS NULL
