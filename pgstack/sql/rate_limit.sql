-- Rate-limit statements, one per algorithm, each one round trip on the database
-- clock: `{now_us}` is statement_timestamp() in microseconds since the epoch
-- (fixed for the statement, current even inside a long transaction). `{table}`
-- is the limiter's checked, quoted table name; parameters come from the spec.
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
WITH admitted AS (
    INSERT INTO {table} AS r (key, tat)
    SELECT $1, {now_us} + $2
    WHERE $2 <= $3
    ON CONFLICT (key) DO UPDATE
        SET tat = greatest(r.tat + $2, excluded.tat)
        WHERE greatest(r.tat + $2, excluded.tat) - excluded.tat + $2 <= $3
    RETURNING tat
)
SELECT {now_us},
       (SELECT tat FROM admitted) AS admitted_tat,
       -- Read only when denied (CASE evaluates lazily): the admitted path does no lookup.
       CASE WHEN NOT EXISTS (SELECT 1 FROM admitted)
            THEN (SELECT tat FROM {table} WHERE key = $1) END AS current_tat

-- name: RateTokenBucket
-- Tokens refill at $2 per microsecond up to $3; a request takes $4.
WITH admitted AS (
    INSERT INTO {table} AS r (key, tokens, updated_us)
    SELECT $1, $3 - $4, {now_us}
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET tokens = least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $2) - $4,
            updated_us = greatest(r.updated_us, excluded.updated_us)
        WHERE least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $2) >= $4
    RETURNING tokens
)
SELECT {now_us},
       (SELECT tokens FROM admitted) AS admitted_tokens,
       r.tokens,
       r.updated_us
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RateFixedWindow
-- A counter per epoch-aligned window of $2 microseconds; at most $3 per window.
WITH admitted AS (
    INSERT INTO {table} AS r (key, window_start, count)
    SELECT $1, {now_us} - {now_us} % $2, $4
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET count = CASE WHEN r.window_start = excluded.window_start
                         THEN r.count + $4 ELSE $4 END,
            window_start = excluded.window_start
        WHERE (CASE WHEN r.window_start = excluded.window_start
                    THEN r.count + $4 ELSE $4 END) <= $3
    RETURNING count
)
SELECT {now_us},
       (SELECT count FROM admitted) AS admitted_count,
       r.window_start,
       r.count
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RateSlidingWindow
-- The times of the requests admitted in the last $2 microseconds: exact over
-- any window, at the cost of one array element per request (limit <= 10000).
WITH admitted AS (
    INSERT INTO {table} AS r (key, hits)
    SELECT $1, array_fill({now_us}, ARRAY[$4::int])
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET hits = ARRAY(SELECT h FROM unnest(r.hits) AS h
                         WHERE h > excluded.hits[1] - $2 ORDER BY h)
                   || excluded.hits
        WHERE cardinality(ARRAY(SELECT h FROM unnest(r.hits) AS h
                                WHERE h > excluded.hits[1] - $2)) + $4 <= $3
    RETURNING hits
)
SELECT {now_us},
       (SELECT hits FROM admitted) AS admitted_hits,
       CASE WHEN NOT EXISTS (SELECT 1 FROM admitted)
            THEN (SELECT hits FROM {table} WHERE key = $1) END AS current_hits

-- name: RatePeekGcra
SELECT {now_us},
       (SELECT tat FROM {table} WHERE key = $1)

-- name: RatePeekTokenBucket
SELECT {now_us}, r.tokens, r.updated_us
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RatePeekFixedWindow
SELECT {now_us}, r.window_start, r.count
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RatePeekSlidingWindow
SELECT {now_us},
       (SELECT hits FROM {table} WHERE key = $1)

-- name: RateReset
DELETE FROM {table} WHERE key = $1

-- name: RateSweepGcra
-- Rows whose bucket has fully drained are the same as no row: delete them.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE tat <= {now_us}
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepTokenBucket
-- $2 = microseconds a drained bucket takes to refill completely.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE updated_us + $2 <= {now_us}
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepFixedWindow
-- $2 = the window length.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE window_start + $2 <= {now_us}
    LIMIT $1 FOR UPDATE SKIP LOCKED)

-- name: RateSweepSlidingWindow
-- $2 = the period.
DELETE FROM {table} WHERE key IN (
    SELECT key FROM {table}
    WHERE coalesce(hits[cardinality(hits)], 0) + $2
          <= {now_us}
    LIMIT $1 FOR UPDATE SKIP LOCKED)
