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
-- The row's window only moves forward: a check that waited for the row lock while
-- a later check opened the next window (its statement_timestamp() is older than
-- the row's window_start) is counted in that newer window. Moving the window back
-- would reset the count and admit more than $3 in one window.
WITH admitted AS (
    INSERT INTO {table} AS r (key, window_start, count)
    SELECT $1, {now_us} - {now_us} % $2, $4
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET count = CASE WHEN excluded.window_start <= r.window_start
                         THEN r.count + $4 ELSE $4 END,
            window_start = greatest(r.window_start, excluded.window_start)
        WHERE (CASE WHEN excluded.window_start <= r.window_start
                    THEN r.count + $4 ELSE $4 END) <= $3
    RETURNING count, window_start
)
SELECT {now_us},
       (SELECT count FROM admitted) AS admitted_count,
       (SELECT window_start FROM admitted) AS admitted_window,
       r.window_start,
       r.count
FROM (SELECT 1) AS one
LEFT JOIN {table} AS r ON r.key = $1

-- name: RateSlidingWindow
-- The times of the requests admitted in the last $2 microseconds: exact over
-- any window, at the cost of one array element per request (limit <= 10000).
-- A key's clock never runs backwards: a check that waited for the row lock
-- behind a later one (its statement_timestamp() is older than the newest hit,
-- the array's last element) is judged and recorded at that newest hit's time.
-- Judged at its own older time, it would count hits a later check had already
-- pruned, and could pass the limit.
WITH admitted AS (
    INSERT INTO {table} AS r (key, hits)
    SELECT $1, array_fill({now_us}, ARRAY[$4::int])
    WHERE $4 <= $3
    ON CONFLICT (key) DO UPDATE
        SET hits = ARRAY(SELECT h FROM unnest(r.hits) AS h
                         WHERE h > greatest(excluded.hits[1], r.hits[cardinality(r.hits)]) - $2
                         ORDER BY h)
                   || array_fill(greatest(excluded.hits[1], r.hits[cardinality(r.hits)]),
                                 ARRAY[$4::int])
        WHERE cardinality(ARRAY(SELECT h FROM unnest(r.hits) AS h
                                WHERE h > greatest(excluded.hits[1], r.hits[cardinality(r.hits)]) - $2))
              + $4 <= $3
    RETURNING hits
)
SELECT {now_us},
       (SELECT hits FROM admitted) AS admitted_hits,
       CASE WHEN NOT EXISTS (SELECT 1 FROM admitted)
            THEN (SELECT hits FROM {table} WHERE key = $1) END AS current_hits

-- Batched checks (`check_many` and the coalescing `CheckBatcher`): the same
-- admission per key, for many distinct keys in one statement. $1 holds the keys,
-- sorted, so two batches lock their rows in the same order and cannot deadlock,
-- and $2 each key's cost, behind sub-selects so the cached generic plan serves
-- every batch (see "Arrays behind sub-selects" in pgstack/src/sql.rs). Each key's cost
-- travels in its inserted row (`excluded`), so every key is judged exactly as its
-- own single-key statement would judge it. Rows come back as
-- `key, now, admitted_state, current_state...`.

-- name: RateGcraMany
-- $2 = emission interval × cost per key, $3 = emission interval × burst;
-- excluded.tat - now is the key's own increment.
WITH req AS MATERIALIZED (
    SELECT key, inc FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[])) AS req(key, inc)
),
admitted AS (
    INSERT INTO {table} AS r (key, tat)
    SELECT req.key, {now_us} + req.inc
    FROM req
    WHERE req.inc <= $3
    ON CONFLICT (key) DO UPDATE
        SET tat = greatest(r.tat + (excluded.tat - {now_us}), excluded.tat)
        WHERE greatest(r.tat + (excluded.tat - {now_us}), excluded.tat) - {now_us} <= $3
    RETURNING key, tat
)
SELECT req.key,
       {now_us},
       a.tat AS admitted_tat,
       CASE WHEN a.key IS NULL
            THEN (SELECT tat FROM {table} AS t WHERE t.key = req.key) END AS current_tat
FROM req
LEFT JOIN admitted AS a ON a.key = req.key

-- name: RateTokenBucketMany
-- $2 = cost per key, $3 = capacity, $4 = refill per microsecond; a new row starts
-- at $3 - cost, so $3 - excluded.tokens is the key's own cost.
WITH req AS MATERIALIZED (
    SELECT key, cost FROM unnest((SELECT $1::text[]), (SELECT $2::float8[])) AS req(key, cost)
),
admitted AS (
    INSERT INTO {table} AS r (key, tokens, updated_us)
    SELECT req.key, $3 - req.cost, {now_us}
    FROM req
    WHERE req.cost <= $3
    ON CONFLICT (key) DO UPDATE
        SET tokens = least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $4)
                     - ($3 - excluded.tokens),
            updated_us = greatest(r.updated_us, excluded.updated_us)
        WHERE least($3, r.tokens + greatest(0, excluded.updated_us - r.updated_us) * $4)
              >= $3 - excluded.tokens
    RETURNING key, tokens
)
SELECT req.key, {now_us}, a.tokens AS admitted_tokens, r.tokens, r.updated_us
FROM req
LEFT JOIN admitted AS a ON a.key = req.key
LEFT JOIN {table} AS r ON a.key IS NULL AND r.key = req.key

-- name: RateFixedWindowMany
-- $2 = cost per key (excluded.count), $3 = limit, $4 = window length; the window
-- only moves forward, as in RateFixedWindow.
WITH req AS MATERIALIZED (
    SELECT key, cost FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[])) AS req(key, cost)
),
admitted AS (
    INSERT INTO {table} AS r (key, window_start, count)
    SELECT req.key, {now_us} - {now_us} % $4, req.cost
    FROM req
    WHERE req.cost <= $3
    ON CONFLICT (key) DO UPDATE
        SET count = CASE WHEN excluded.window_start <= r.window_start
                         THEN r.count + excluded.count ELSE excluded.count END,
            window_start = greatest(r.window_start, excluded.window_start)
        WHERE (CASE WHEN excluded.window_start <= r.window_start
                    THEN r.count + excluded.count ELSE excluded.count END) <= $3
    RETURNING key, count, window_start
)
SELECT req.key, {now_us}, a.count AS admitted_count, a.window_start AS admitted_window,
       r.window_start, r.count
FROM req
LEFT JOIN admitted AS a ON a.key = req.key
LEFT JOIN {table} AS r ON a.key IS NULL AND r.key = req.key

-- name: RateSlidingWindowMany
-- $2 = cost per key (the length of excluded.hits), $3 = limit, $4 = period; a
-- key's clock never runs backwards, as in RateSlidingWindow.
WITH req AS MATERIALIZED (
    SELECT key, cost FROM unnest((SELECT $1::text[]), (SELECT $2::bigint[])) AS req(key, cost)
),
admitted AS (
    INSERT INTO {table} AS r (key, hits)
    SELECT req.key, array_fill({now_us}, ARRAY[req.cost::int])
    FROM req
    WHERE req.cost <= $3
    ON CONFLICT (key) DO UPDATE
        SET hits = ARRAY(SELECT h FROM unnest(r.hits) AS h
                         WHERE h > greatest(excluded.hits[1], r.hits[cardinality(r.hits)]) - $4
                         ORDER BY h)
                   || array_fill(greatest(excluded.hits[1], r.hits[cardinality(r.hits)]),
                                 ARRAY[cardinality(excluded.hits)])
        WHERE cardinality(ARRAY(SELECT h FROM unnest(r.hits) AS h
                                WHERE h > greatest(excluded.hits[1], r.hits[cardinality(r.hits)]) - $4))
              + cardinality(excluded.hits) <= $3
    RETURNING key, hits
)
SELECT req.key,
       {now_us},
       a.hits AS admitted_hits,
       CASE WHEN a.key IS NULL
            THEN (SELECT hits FROM {table} AS t WHERE t.key = req.key) END AS current_hits
FROM req
LEFT JOIN admitted AS a ON a.key = req.key

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
