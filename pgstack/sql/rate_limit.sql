-- Rate-limit statements, one per algorithm, each one round trip on the database
-- clock (clock_timestamp(), in microseconds since the epoch). `{table}` is the
-- limiter's checked, quoted table name; parameters come from the spec.
--
-- Each check is an INSERT ... ON CONFLICT DO UPDATE ... WHERE <admitted>: the
-- conflicting row is locked and the WHERE is evaluated against its latest
-- version, so concurrent callers on one key are admitted one at a time and never
-- past the limit. A denied check writes nothing. The trailing SELECT also reads
-- the current state (from the statement's snapshot) to tell a denied caller when
-- to come back.

-- name: RateGcra
-- GCRA: tat is the theoretical arrival time. $2 = emission interval × cost,
-- $3 = emission interval × burst. Admitted when max(tat, now) + $2 - now <= $3.
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us
), admitted AS (
    INSERT INTO {table} AS r (key, tat)
    SELECT $1, now_us + $2 FROM clock
    WHERE $2 <= $3
    ON CONFLICT (key) DO UPDATE
        SET tat = greatest(r.tat + $2, excluded.tat)
        WHERE greatest(r.tat + $2, excluded.tat) - excluded.tat + $2 <= $3
    RETURNING tat
)
SELECT clock.now_us,
       (SELECT tat FROM admitted) AS admitted_tat,
       (SELECT tat FROM {table} WHERE key = $1) AS current_tat
FROM clock

-- name: RateTokenBucket
-- Tokens refill at $2 per microsecond up to $3; a request takes $4.
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us
), admitted AS (
    INSERT INTO {table} AS r (key, tokens, updated_us)
    SELECT $1, $3 - $4, now_us FROM clock
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET tokens = least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $2) - $4,
            updated_us = greatest(r.updated_us, excluded.updated_us)
        WHERE least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $2) >= $4
    RETURNING tokens
)
SELECT clock.now_us,
       (SELECT tokens FROM admitted) AS admitted_tokens,
       r.tokens,
       r.updated_us
FROM clock
LEFT JOIN {table} AS r ON r.key = $1

-- name: RateFixedWindow
-- A counter per epoch-aligned window of $2 microseconds; at most $3 per window.
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us
), admitted AS (
    INSERT INTO {table} AS r (key, window_start, count)
    SELECT $1, now_us - now_us % $2, $4 FROM clock
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET count = CASE WHEN r.window_start = excluded.window_start
                         THEN r.count + $4 ELSE $4 END,
            window_start = excluded.window_start
        WHERE (CASE WHEN r.window_start = excluded.window_start
                    THEN r.count + $4 ELSE $4 END) <= $3
    RETURNING count
)
SELECT clock.now_us,
       (SELECT count FROM admitted) AS admitted_count,
       r.window_start,
       r.count
FROM clock
LEFT JOIN {table} AS r ON r.key = $1

-- name: RateSlidingWindow
-- The times of the requests admitted in the last $2 microseconds: exact over
-- any window, at the cost of one array element per request (limit <= 10000).
WITH clock AS (
    SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint AS now_us
), admitted AS (
    INSERT INTO {table} AS r (key, hits)
    SELECT $1, array_fill(now_us, ARRAY[$4::int]) FROM clock
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET hits = ARRAY(SELECT h FROM unnest(r.hits) AS h
                         WHERE h > excluded.hits[1] - $2 ORDER BY h)
                   || excluded.hits
        WHERE cardinality(ARRAY(SELECT h FROM unnest(r.hits) AS h
                                WHERE h > excluded.hits[1] - $2)) + $4 <= $3
    RETURNING hits
)
SELECT clock.now_us,
       (SELECT hits FROM admitted) AS admitted_hits,
       (SELECT hits FROM {table} WHERE key = $1) AS current_hits
FROM clock

-- name: RatePeekGcra
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
       (SELECT tat FROM {table} WHERE key = $1)

-- name: RatePeekTokenBucket
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, r.tokens, r.updated_us
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RatePeekFixedWindow
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint, r.window_start, r.count
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RatePeekSlidingWindow
SELECT (extract(epoch FROM clock_timestamp()) * 1000000)::bigint,
       (SELECT hits FROM {table} WHERE key = $1)

-- name: RateReset
DELETE FROM {table} WHERE key = $1

-- name: RateSweepGcra
-- Rows whose bucket has fully drained are the same as no row: delete them.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE tat <= (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepTokenBucket
-- $2 = microseconds a drained bucket takes to refill completely.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE updated_us + $2 <= (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepFixedWindow
-- $2 = the window length.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE window_start + $2 <= (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepSlidingWindow
-- $2 = the period.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE coalesce(hits[cardinality(hits)], 0) + $2
          <= (extract(epoch FROM clock_timestamp()) * 1000000)::bigint
    LIMIT $1 FOR UPDATE SKIP LOCKED)
