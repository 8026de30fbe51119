-- Queue statements. `{table}` is the queue's hot table, `{dead}` its dead-letter
-- table, `{archive}` its partitioned archive (all checked and quoted), and
-- `{ready_order}` the claim order: `priority, visible_at` or `visible_at`,
-- `{pauses}` the schema's pgstack_queue_pauses and `{queue}` the queue's name as
-- a string literal (a checked identifier, so safe to quote).
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
--
-- `{held}` is the fence's "still claimed" test, written
-- `coalesce(q.claimed_at IS NOT NULL, false)`: the same truth as
-- `q.claimed_at IS NOT NULL`, but the planner cannot match it to the lease
-- index's predicate, so each job is found through the primary key. Written
-- plainly, the generic plan (its statistics taken when few jobs ran) scans the
-- whole lease index, every running job and every dead entry of the finished
-- ones, for each batch: 39 ms instead of 0.4 ms for 150 jobs, measured under
-- `pgstack-bench queue`.

-- name: QueueEnqueue
INSERT INTO {table} (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7, $8)
RETURNING id, false AS duplicate

-- name: QueueEnqueueUnique
-- A job whose unique_key is already waiting or running returns that job: the
-- no-op DO UPDATE makes RETURNING yield the existing row, and a non-zero xmax
-- tells it apart from a fresh insert.
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7, $8)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET unique_key = excluded.unique_key
RETURNING id, NOT (xmax = 0) AS duplicate

-- name: QueueEnqueueReplace
-- Key mode replace: a waiting job with the key takes this enqueue's payload, run
-- time, priority and max_attempts; a running one is left as it is. Either way
-- RETURNING yields the existing row (assigning a running job its own values).
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7, $8)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET
        kind = CASE WHEN q.claimed_at IS NULL THEN excluded.kind ELSE q.kind END,
        payload = CASE WHEN q.claimed_at IS NULL THEN excluded.payload ELSE q.payload END,
        priority = CASE WHEN q.claimed_at IS NULL THEN excluded.priority ELSE q.priority END,
        visible_at = CASE WHEN q.claimed_at IS NULL THEN excluded.visible_at ELSE q.visible_at END,
        max_attempts = CASE WHEN q.claimed_at IS NULL THEN excluded.max_attempts
                            ELSE q.max_attempts END
RETURNING id, NOT (xmax = 0) AS duplicate

-- name: QueueEnqueueDebounce
-- Key mode debounce: a waiting job with the key moves to this enqueue's run time
-- (and payload), so it runs once the enqueues stop for the delay; a running one
-- is left as it is.
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
VALUES ($1, $2, $3, coalesce($4, now() + $5::bigint * interval '1 millisecond'), $6, $7, $8)
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET
        payload = CASE WHEN q.claimed_at IS NULL THEN excluded.payload ELSE q.payload END,
        visible_at = CASE WHEN q.claimed_at IS NULL THEN excluded.visible_at ELSE q.visible_at END
RETURNING id, NOT (xmax = 0) AS duplicate

-- name: QueueEnqueueThrottle
-- Key mode throttle, $9 the window in ms: the job runs at the start of the next
-- window (on the database clock) and its key names that window, so every enqueue
-- until it starts joins the one job: at most one job per key per window.
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
SELECT $1, $2, $3,
       greatest(coalesce($4, now() + $5::bigint * interval '1 millisecond'),
                to_timestamp(w.slot * $9::bigint / 1000.0)),
       $6, $7 || '@' || w.slot, $8
FROM (SELECT floor(extract(epoch FROM now()) * 1000 / $9::bigint)::bigint + 1 AS slot) AS w
ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
    DO UPDATE SET unique_key = excluded.unique_key
RETURNING id, NOT (xmax = 0) AS duplicate

-- name: QueueEnqueueMany
-- One statement for the batch; ORDER BY ord makes ids follow the input order.
INSERT INTO {table} (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
SELECT kind, payload, priority,
       CASE WHEN has_run_at THEN run_at
            ELSE now() + delay_ms * interval '1 millisecond' END,
       max_attempts, NULLIF(unique_key, ''), NULLIF(group_key, '')
FROM unnest($1::text[], $2::{payload_type}[], $3::smallint[], $4::boolean[],
            $5::timestamptz[], $6::bigint[], $7::integer[], $8::text[], $9::text[])
     WITH ORDINALITY AS batch(kind, payload, priority, has_run_at, run_at, delay_ms,
                              max_attempts, unique_key, group_key, ord)
ORDER BY ord
RETURNING id, unique_key, false AS duplicate

-- name: QueueEnqueueManyUnique
INSERT INTO {table} AS q (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
SELECT kind, payload, priority,
       CASE WHEN has_run_at THEN run_at
            ELSE now() + delay_ms * interval '1 millisecond' END,
       max_attempts, NULLIF(unique_key, ''), NULLIF(group_key, '')
FROM unnest($1::text[], $2::{payload_type}[], $3::smallint[], $4::boolean[],
            $5::timestamptz[], $6::bigint[], $7::integer[], $8::text[], $9::text[])
     WITH ORDINALITY AS batch(kind, payload, priority, has_run_at, run_at, delay_ms,
                              max_attempts, unique_key, group_key, ord)
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
-- A paused queue (a row in {pauses}) claims nothing: the NOT EXISTS is
-- uncorrelated, so PostgreSQL checks it once per claim, before any scan.
-- The picked rows reach the UPDATE as an array of their ctids, so it fetches each
-- row straight from its heap page (a Tid Scan; through the primary key it paid a
-- descent of the index per row, a fifth of the claim's buffer reads): joined to
-- the CTE instead, the generic plan guesses the LIMIT's size and may hash the
-- whole table. A ctid names one row version; the row cannot move while this
-- statement holds its lock. When the lock found a newer version than the
-- statement's snapshot (a concurrent admin update, committed meanwhile), the
-- UPDATE does not see it and skips the row, which stays waiting for the next
-- claim.
-- The group filter (queues with `groups = true`): a job with a group key is
-- claimable only while no job of its group with a smaller id (enqueued earlier:
-- waiting, retrying or running) is still in the table, so a group runs one job
-- at a time in enqueue order; concurrent claims cannot both take one, since the
-- earlier job is still there in either's snapshot until the one that holds it
-- finishes. Other queues' claims carry no such test.
-- The limit is read behind a sub-select for the reason arrays are: given the
-- number, PostgreSQL prices each claim exactly and plans every one afresh (7% of
-- the server's CPU under `pgstack-bench queue`); unknown, the plans cost the
-- same and the cached generic one serves every claim.
WITH expired AS (
    SELECT ctid FROM {table}
    WHERE claimed_at IS NOT NULL AND visible_at <= now()
      AND NOT EXISTS (SELECT 1 FROM {pauses} WHERE queue = {queue})
    ORDER BY visible_at
    LIMIT (SELECT $1::bigint)
    FOR UPDATE SKIP LOCKED
), ready AS (
    SELECT ctid FROM {table} AS r
    WHERE claimed_at IS NULL AND visible_at <= now()
      AND NOT EXISTS (SELECT 1 FROM {pauses} WHERE queue = {queue})
      {group_filter}
    ORDER BY {ready_order}
    LIMIT (SELECT $1::bigint)
    FOR UPDATE SKIP LOCKED
), picked AS (
    SELECT ctid FROM expired
    UNION ALL
    SELECT ctid FROM ready
    LIMIT (SELECT $1::bigint)
)
UPDATE {table} AS q
SET claimed_at = now(),
    visible_at = now() + $2::bigint * interval '1 millisecond',
    attempt = q.attempt + 1
WHERE q.ctid = ANY(ARRAY(SELECT ctid FROM picked))
RETURNING q.id, q.kind, q.payload, q.priority, q.attempt, q.max_attempts,
          q.created_at, q.unique_key, q.visible_at, q.last_error

-- name: QueueClaimTurn
-- Tries to take one of $2 turns at claiming this queue, for the rest of the
-- transaction the claim then runs in: the first free one (a transaction-scoped
-- advisory lock on ($1 hashed, turn)); false when all are taken, and the caller
-- waits with QueueClaimTurnWait. Claims running at once all start at the head of
-- the same ready index and step over the rows the others hold locked or claimed
-- after their snapshot; taken in turns, sixteen worker processes on two cores ran
-- 77k-82k jobs/s instead of 48k-60k under `pgstack-bench queue --processes`. The
-- turn is its own statement so that the claim's snapshot is taken after any wait.
-- EXISTS stops at the first turn it gets, so it takes at most one.
SELECT EXISTS (
    SELECT 1 FROM generate_series(0, $2::integer - 1) AS turn
    WHERE pg_try_advisory_xact_lock(hashtext($1::text), turn)
)

-- name: QueueClaimTurnWait
-- Waits for one of $2 turns, at random, for at most $3 (a lock_timeout, set for
-- this transaction before the wait: the sub-select is evaluated first): a turn
-- held by a stuck transaction fails the wait with lock_not_available instead of
-- holding the claim forever.
SELECT pg_advisory_xact_lock(hashtext($1::text), wait.turn)
FROM (
    SELECT floor(random() * $2::integer)::integer AS turn,
           set_config('lock_timeout', $3::text, true) AS timeout
    OFFSET 0
) AS wait
WHERE wait.timeout IS NOT NULL

-- name: QueueComplete
-- Finished jobs leave the hot table.
DELETE FROM {table} AS q
USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS done(id, attempt)
WHERE q.id = done.id AND q.attempt = done.attempt AND {held}
RETURNING q.id

-- name: QueueCompleteArchive
-- Finished jobs move to the archive in the same statement.
WITH done AS (
    DELETE FROM {table} AS q
    USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS done(id, attempt)
    WHERE q.id = done.id AND q.attempt = done.attempt AND {held}
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
WHERE q.id = r.id AND q.attempt = r.attempt AND {held}
RETURNING q.id

-- name: QueueKillDead
-- Jobs out of attempts move to the dead-letter table with their last error.
WITH dead AS (
    DELETE FROM {table} AS q
    USING unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::text[])) AS d(id, attempt, error)
    WHERE q.id = d.id AND q.attempt = d.attempt AND {held}
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
    WHERE q.id = d.id AND q.attempt = d.attempt AND {held}
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
WHERE q.id = d.id AND q.attempt = d.attempt AND {held}
RETURNING q.id

-- name: QueueExtend
-- Heartbeat: pushes the lease of still-held jobs $3 ms into the future; returns
-- the ids still held (a missing id means the lease was lost).
UPDATE {table} AS q
SET visible_at = now() + $3::bigint * interval '1 millisecond'
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS h(id, attempt)
WHERE q.id = h.id AND q.attempt = h.attempt AND {held}
RETURNING q.id

-- name: QueueRelease
-- Gives jobs back unfinished (graceful shutdown): visible at once, and the
-- attempt is not counted.
UPDATE {table} AS q
SET claimed_at = NULL, visible_at = now(), attempt = q.attempt - 1
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[])) AS r(id, attempt)
WHERE q.id = r.id AND q.attempt = r.attempt AND {held}
RETURNING q.id

-- name: QueueSnooze
-- A handler's snooze: waiting again from now + delay, the attempt not spent.
-- The attempt (the fencing token) never goes back; max_attempts goes up instead.
UPDATE {table} AS q
SET claimed_at = NULL,
    visible_at = now() + r.delay_ms * interval '1 millisecond',
    max_attempts = q.max_attempts + 1
FROM unnest((SELECT $1::bigint[]), (SELECT $2::integer[]), (SELECT $3::bigint[]))
     AS r(id, attempt, delay_ms)
WHERE q.id = r.id AND q.attempt = r.attempt AND {held}
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

-- Admin statements (pgstack/src/queue/admin.rs): inspect and steer jobs by id,
-- unfenced by attempt, as an operator does.

-- name: QueueJobGet
-- One job in the hot table: waiting, scheduled, retrying or running.
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, visible_at, claimed_at, visible_at <= now() AS due
FROM {table}
WHERE id = $1

-- name: QueueJobList
-- One page of the jobs in one state (its predicate fills the WHERE); filters are
-- optional: $2 kind, $3 unique key (NULL: any); keyset on id after $1.
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, visible_at, claimed_at, visible_at <= now() AS due
FROM {table}
WHERE {state_where}
  AND id > $1
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR unique_key = $3)
ORDER BY id
LIMIT $4

-- name: QueueDeadGet
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, failed_at
FROM {dead}
WHERE id = $1

-- name: QueueDeadListFiltered
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, failed_at
FROM {dead}
WHERE id > $1
  AND ($2::text IS NULL OR kind = $2)
  AND ($3::text IS NULL OR unique_key = $3)
ORDER BY id
LIMIT $4

-- name: QueueArchiveGet
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key, last_error,
       created_at, finished_at, outcome
FROM {archive}
WHERE id = $1

-- name: QueueCancelDead
-- Cancels a job, waiting or running: it leaves the hot table for the dead
-- letters, its error saying why; a running worker's completion then finds it
-- gone and changes nothing, and the worker's heartbeat tells the handler.
WITH gone AS (
    DELETE FROM {table} WHERE id = $1
    RETURNING *
)
INSERT INTO {dead} (id, kind, payload, priority, attempt, max_attempts, unique_key,
                    last_error, created_at, failed_at)
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key,
       'cancelled: ' || $2, created_at, now()
FROM gone
RETURNING id, (SELECT claimed_at IS NOT NULL FROM gone) AS was_running

-- name: QueueCancelArchive
WITH gone AS (
    DELETE FROM {table} WHERE id = $1
    RETURNING *
)
INSERT INTO {archive} (id, kind, payload, priority, attempt, max_attempts, unique_key,
                       last_error, created_at, finished_at, outcome)
SELECT id, kind, payload, priority, attempt, max_attempts, unique_key,
       'cancelled: ' || $2, created_at, now(), 'cancelled'
FROM gone
RETURNING id, (SELECT claimed_at IS NOT NULL FROM gone) AS was_running

-- name: QueueCancelDelete
DELETE FROM {table} WHERE id = $1 AND $2::text IS NOT NULL
RETURNING id, claimed_at IS NOT NULL AS was_running

-- name: QueueRetryNow
-- A waiting, scheduled or retrying job becomes claimable now.
UPDATE {table} SET visible_at = now()
WHERE id = $1 AND claimed_at IS NULL
RETURNING id

-- name: QueueDeleteWaiting
DELETE FROM {table} WHERE id = $1 AND claimed_at IS NULL
RETURNING id

-- name: QueueDeleteDead
DELETE FROM {dead} WHERE id = $1
RETURNING id

-- name: QueuePurge
-- Every job not running: waiting, scheduled and retrying.
DELETE FROM {table} WHERE claimed_at IS NULL

-- name: QueuePurgeDead
DELETE FROM {dead}

-- name: QueuePause
INSERT INTO {pauses} (queue, reason) VALUES ({queue}, $1)
ON CONFLICT (queue) DO UPDATE SET reason = excluded.reason

-- name: QueueResume
DELETE FROM {pauses} WHERE queue = {queue}

-- name: QueuePaused
SELECT paused_at, reason FROM {pauses} WHERE queue = {queue}

-- name: QueueDeadIdsByKind
SELECT id FROM {dead} WHERE kind = $1 ORDER BY id LIMIT $2

-- name: QueueNotifyCancel
-- Tells listening workers at once that job $2 was cancelled.
SELECT pg_notify($1, 'cancel:' || $2::bigint)

-- name: QueueScheduleRegister
-- Registers the queue's schedules ($1 names, $2 cron expressions, $3 time zones). A new
-- schedule counts its ticks from now: none from before it existed. One whose cron or time
-- zone changed starts again from now, so the old definition's ticks are not caught up.
INSERT INTO {schedules} AS s (queue, name, cron, timezone, last_tick)
SELECT {queue}, n, c, z, now() FROM unnest($1::text[], $2::text[], $3::text[]) AS t(n, c, z)
ON CONFLICT (queue, name) DO UPDATE
    SET cron = excluded.cron, timezone = excluded.timezone, last_tick = now()
    WHERE (s.cron, s.timezone) IS DISTINCT FROM (excluded.cron, excluded.timezone)

-- name: QueueScheduleLock
-- The schedules ($1) whose ticks this pass decides, with the last tick each has decided and
-- the database's clock. Locked until the pass commits; a concurrent pass in another worker
-- skips them instead of waiting, so each tick is decided (and enqueued) by one pass.
SELECT name, last_tick, now() FROM {schedules}
WHERE queue = {queue} AND name = ANY($1::text[])
FOR UPDATE SKIP LOCKED

-- name: QueueScheduleEnqueue
-- One job per tick ($5: the ticks' times) of kind $1, payload $2, priority $3 and $4
-- attempts. A tick's job is created at its tick and may run from then, so a tick caught up
-- late runs at once, ahead of jobs enqueued after its time.
INSERT INTO {table} (kind, payload, priority, max_attempts, created_at, visible_at)
SELECT $1, $2::{payload_type}, $3, $4, t, t FROM unnest($5::timestamptz[]) AS t

-- name: QueueScheduleAdvance
-- Records that schedule $1's ticks up to $2 are decided (enqueued or skipped).
UPDATE {schedules} SET last_tick = $2, ticked_at = now()
WHERE queue = {queue} AND name = $1
