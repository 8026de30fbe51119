-- Queue statements. `{table}` is the queue's hot table, `{dead}` its dead-letter
-- table, `{archive}` its partitioned archive (all checked and quoted), and
-- `{ready_order}` the claim order: `priority, visible_at` or `visible_at`.
--
-- A job is waiting while claimed_at IS NULL and running while it is set;
-- visible_at is when it may next be claimed (its scheduled time, its retry time,
-- or the end of its lease). `attempt` is the fencing token: completing, failing,
-- extending or releasing a job names the attempt it was claimed with, so a
-- worker whose lease expired and whose job was claimed again changes nothing.
--
-- sea-query cannot bind NULL inside arrays, so batch statements take sentinels:
-- an empty unique key means none, and has_run_at says whether run_at is set.
--
-- The small, frequent batches (complete, retry, kill, extend, release) read their
-- arrays behind sub-selects so the cached generic plan serves every batch (see
-- "Arrays behind sub-selects" in pgstack/src/sql.rs).

-- name: QueueEnqueue
INSERT INTO {table} (kind, payload, priority, visible_at, max_attempts, unique_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7)
RETURNING id, false AS duplicate

-- name: QueueEnqueueUnique
-- A job whose unique_key is already waiting or running returns that job: the
-- no-op DO UPDATE makes RETURNING yield the existing row, and a non-zero xmax
-- tells it apart from a fresh insert.
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET unique_key = excluded.unique_key
RETURNING id, NOT (xmax = 0) AS duplicate

-- name: QueueEnqueueMany
-- One statement for the batch; ORDER BY ord makes ids follow the input order.
INSERT INTO {table} (kind, payload, priority, visible_at, max_attempts, unique_key)
SELECT kind, payload, priority,
       CASE WHEN has_run_at THEN run_at
            ELSE now() + delay_ms * interval '1 millisecond' END,
       max_attempts, NULLIF(unique_key, '')
FROM unnest($1::text[], $2::{payload_type}[], $3::smallint[], $4::boolean[],
            $5::timestamptz[], $6::bigint[], $7::integer[], $8::text[])
     WITH ORDINALITY AS batch(kind, payload, priority, has_run_at, run_at, delay_ms,
                              max_attempts, unique_key, ord)
ORDER BY ord
RETURNING id, unique_key, false AS duplicate

-- name: QueueEnqueueManyUnique
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key)
SELECT kind, payload, priority,
       CASE WHEN has_run_at THEN run_at
            ELSE now() + delay_ms * interval '1 millisecond' END,
       max_attempts, NULLIF(unique_key, '')
FROM unnest($1::text[], $2::{payload_type}[], $3::smallint[], $4::boolean[],
            $5::timestamptz[], $6::bigint[], $7::integer[], $8::text[])
     WITH ORDINALITY AS batch(kind, payload, priority, has_run_at, run_at, delay_ms,
                              max_attempts, unique_key, ord)
ORDER BY ord
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET unique_key = excluded.unique_key
RETURNING id, unique_key, NOT (xmax = 0) AS duplicate

-- name: QueueClaim
-- Claims up to $1 jobs with a lease of $2 ms in one statement. Expired leases
-- (a worker died or stalled) go first, then waiting jobs in claim order. Each
-- SELECT ... FOR UPDATE SKIP LOCKED sits in its own CTE: a CTE with FOR UPDATE
-- is evaluated once, so the LIMIT bounds the rows locked and updated (an
-- `id IN (subquery LIMIT n)` may be re-run by the planner and touch more), and
-- concurrent claimers skip each other's rows instead of waiting.
WITH expired AS (
    SELECT id FROM {table}
    WHERE claimed_at IS NOT NULL AND visible_at <= now()
    ORDER BY visible_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT id FROM {table}
    WHERE claimed_at IS NULL AND visible_at <= now()
    ORDER BY {ready_order}
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT id FROM expired
    UNION ALL
    SELECT id FROM ready
    LIMIT $1
)
UPDATE {table} AS q
SET claimed_at = now(),
    visible_at = now() + $2::bigint * interval '1 millisecond',
    attempt = q.attempt + 1
FROM picked
WHERE q.id = picked.id
RETURNING q.id, q.kind, q.payload, q.priority, q.attempt, q.max_attempts,
          q.created_at, q.unique_key, q.visible_at, q.last_error

-- name: QueueComplete
-- Finished jobs leave the hot table.
DELETE FROM {table} AS q
USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS done(id, attempt)
WHERE q.id = done.id AND q.attempt = done.attempt AND q.claimed_at IS NOT NULL
RETURNING q.id

-- name: QueueCompleteArchive
-- Finished jobs move to the archive in the same statement.
WITH done AS (
    DELETE FROM {table} AS q
    USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS done(id, attempt)
    WHERE q.id = done.id AND q.attempt = done.attempt AND q.claimed_at IS NOT NULL
    RETURNING q.*
)
INSERT INTO {archive} (id, kind, payload, priority, attempt, max_attempts, unique_key,
                       last_error, created_at, finished_at, outcome)
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key,
       last_error, created_at, now(), 'completed'
FROM done
RETURNING id

-- name: QueueRetry
-- Failed jobs with attempts left wait $3 ms (times a random factor in [0.5, 1]
-- when $5 asks for jitter) before they may be claimed again.
UPDATE {table} AS q
SET claimed_at = NULL,
    visible_at = now() + r.delay_ms
        * (CASE WHEN $5::boolean THEN 0.5 + random() / 2 ELSE 1 END)
        * interval '1 millisecond',
    last_error = r.error
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::bigint[]), (SELECT $4::text[]))
     AS r(id, attempt, delay_ms, error)
WHERE q.id = r.id AND q.attempt = r.attempt AND q.claimed_at IS NOT NULL
RETURNING q.id

-- name: QueueKillDead
-- Jobs out of attempts move to the dead-letter table with their last error.
WITH dead AS (
    DELETE FROM {table} AS q
    USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::text[])) AS d(id, attempt, error)
    WHERE q.id = d.id AND q.attempt = d.attempt AND q.claimed_at IS NOT NULL
    RETURNING q.*, d.error
)
INSERT INTO {dead} (id, kind, payload, priority, attempt, max_attempts, unique_key,
                    last_error, created_at, failed_at)
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key,
       error, created_at, now()
FROM dead
RETURNING id

-- name: QueueKillArchive
-- Without a dead-letter table, jobs out of attempts are archived as discarded.
WITH dead AS (
    DELETE FROM {table} AS q
    USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::text[])) AS d(id, attempt, error)
    WHERE q.id = d.id AND q.attempt = d.attempt AND q.claimed_at IS NOT NULL
    RETURNING q.*, d.error
)
INSERT INTO {archive} (id, kind, payload, priority, attempt, max_attempts, unique_key,
                       last_error, created_at, finished_at, outcome)
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key,
       error, created_at, now(), 'discarded'
FROM dead
RETURNING id

-- name: QueueKillDelete
-- Without a dead-letter table or an archive, jobs out of attempts are deleted.
DELETE FROM {table} AS q
USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::text[])) AS d(id, attempt, error)
WHERE q.id = d.id AND q.attempt = d.attempt AND q.claimed_at IS NOT NULL
RETURNING q.id

-- name: QueueExtend
-- Heartbeat: pushes the lease of still-held jobs $3 ms into the future; returns
-- the ids still held (a missing id means the lease was lost).
UPDATE {table} AS q
SET visible_at = now() + $3::bigint * interval '1 millisecond'
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS h(id, attempt)
WHERE q.id = h.id AND q.attempt = h.attempt AND q.claimed_at IS NOT NULL
RETURNING q.id

-- name: QueueRelease
-- Gives jobs back unfinished (graceful shutdown): visible at once, and the
-- attempt is not counted.
UPDATE {table} AS q
SET claimed_at = NULL, visible_at = now(), attempt = q.attempt - 1
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS r(id, attempt)
WHERE q.id = r.id AND q.attempt = r.attempt AND q.claimed_at IS NOT NULL
RETURNING q.id

-- name: QueueNotify
SELECT pg_notify($1, '')

-- name: QueueNextVisible
-- When the next waiting job becomes claimable, so an idle worker can sleep
-- until then instead of the whole poll interval.
SELECT min(visible_at) FROM {table} WHERE claimed_at IS NULL

-- name: QueueDeadList
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, failed_at
FROM {dead}
WHERE id > $1
ORDER BY id
LIMIT $2

-- name: QueueRedrive
-- Moves dead jobs back to the hot table with a fresh set of attempts. A job
-- whose unique_key is taken by a live job stays dead (moving it would lose it).
WITH moved AS (
    DELETE FROM {dead} AS d
    WHERE d.id = ANY((SELECT $1::bigint[])::bigint[])
      AND NOT EXISTS (
          SELECT 1 FROM {table} AS q
          WHERE d.unique_key IS NOT NULL AND q.unique_key = d.unique_key)
    RETURNING d.*
)
INSERT INTO {table} (id, kind, payload, priority, max_attempts, unique_key, created_at)
SELECT id, kind, payload, priority, max_attempts, unique_key, created_at
FROM moved
RETURNING id

-- name: QueueDeadIds
SELECT id FROM {dead} ORDER BY id LIMIT $1

-- name: QueueMetrics
-- Each count reads one partial index and stops at $1 rows, so metrics stay cheap
-- on a deep backlog (a count equal to $1 means "at least").
SELECT
    (SELECT count(*) FROM (SELECT 1 FROM {table}
        WHERE (claimed_at IS NULL AND visible_at <= now()) LIMIT $1) AS r)
  + (SELECT count(*) FROM (SELECT 1 FROM {table}
        WHERE (claimed_at IS NOT NULL AND visible_at <= now()) LIMIT $1) AS e) AS ready,
    (SELECT count(*) FROM (SELECT 1 FROM {table}
        WHERE claimed_at IS NOT NULL AND visible_at > now() LIMIT $1) AS x) AS running,
    (SELECT count(*) FROM (SELECT 1 FROM {table}
        WHERE claimed_at IS NULL AND visible_at > now() LIMIT $1) AS s) AS scheduled,
    {dead_count} AS dead,
    (SELECT extract(epoch FROM now() - min(visible_at)) * 1000
       FROM {table} WHERE claimed_at IS NULL AND visible_at <= now())::bigint
      AS oldest_ready_ms

-- name: QueueWaitStart
-- A listening worker about to block registers (or refreshes) itself, so inserts
-- NOTIFY while it waits; see the pgstack_notify trigger function.
INSERT INTO {waiters} (channel, worker, seen_at)
VALUES ($1, $2, now())
ON CONFLICT (channel, worker) DO UPDATE SET seen_at = excluded.seen_at

-- name: QueueWaitEnd
DELETE FROM {waiters} WHERE channel = $1 AND worker = $2
