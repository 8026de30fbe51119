-- Cache statements. `{table}` is the cache's checked, quoted table name (the
-- partitioned parent when the cache has hash partitions) and `{value_type}` its
-- value type (jsonb or bytea); values are always bound.
--
-- An entry is live while value IS NOT NULL and expires_at is NULL or in the
-- future. A row with a NULL value is a placeholder holding a get_or_compute
-- lease (lease_until). $n::bigint TTLs are milliseconds, NULL for no expiry.
--
-- Key lists sit behind a sub-select so the cached generic plan serves every
-- batch (see "Arrays behind sub-selects" in pgstack/src/sql.rs).

-- name: CacheGet
SELECT value
FROM {table}
WHERE key = $1
  AND value IS NOT NULL
  AND (expires_at IS NULL OR expires_at > now())

-- name: CacheGetMany
SELECT key, value
FROM {table}
WHERE key = ANY((SELECT $1::text[])::text[])
  AND value IS NOT NULL
  AND (expires_at IS NULL OR expires_at > now())

-- name: CacheGetManyText
-- What the coalescing reader runs: jsonb comes back as text, decoded once in
-- Rust straight into the caller's type.
SELECT key, value::text
FROM {table}
WHERE key = ANY((SELECT $1::text[])::text[])
  AND value IS NOT NULL
  AND (expires_at IS NULL OR expires_at > now())

-- name: CacheGetForCompute
-- The value even when expired (stale), and whether a computation lease is held.
SELECT value,
       (expires_at IS NULL OR expires_at > now()) AS live,
       coalesce(lease_until > now(), false) AS leased
FROM {table}
WHERE key = $1

-- name: CacheSet
-- An overwrite keeps created_at (eviction is oldest-inserted first) and ends
-- any computation lease on the key.
INSERT INTO {table} AS c (key, value, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        expires_at = excluded.expires_at,
        lease_until = NULL

-- name: CacheSetMany
-- One statement, rows in key order so concurrent batches cannot deadlock.
INSERT INTO {table} AS c (key, value, expires_at)
SELECT k, v, now() + $3::bigint * interval '1 millisecond'
FROM unnest($1::text[], $2::{value_type}[]) AS batch(k, v)
ORDER BY k
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        expires_at = excluded.expires_at,
        lease_until = NULL

-- name: CacheSetIfAbsent
-- Writes only when there is no live entry (an expired one or a placeholder
-- counts as absent); returns a row when it wrote.
INSERT INTO {table} AS c (key, value, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        expires_at = excluded.expires_at,
        lease_until = NULL
    WHERE c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now())
RETURNING true

-- name: CacheReplace
-- Writes only over a live entry; returns a row when it wrote.
UPDATE {table}
SET value = $2, expires_at = now() + $3::bigint * interval '1 millisecond'
WHERE key = $1
  AND value IS NOT NULL
  AND (expires_at IS NULL OR expires_at > now())
RETURNING true

-- name: CacheTouch
UPDATE {table}
SET expires_at = now() + $2::bigint * interval '1 millisecond'
WHERE key = $1
  AND value IS NOT NULL
  AND (expires_at IS NULL OR expires_at > now())
RETURNING true

-- name: CacheDelete
DELETE FROM {table}
WHERE key = $1
RETURNING (value IS NOT NULL AND (expires_at IS NULL OR expires_at > now())) AS was_live

-- name: CacheDeletePrefix
-- A range on the COLLATE "C" key ($2: the smallest string above every key with
-- the prefix), in batches of $3 so no statement runs long.
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE key >= $1 AND key < $2
    LIMIT $3
)

-- name: CacheDeleteFrom
-- As CacheDeletePrefix for the empty prefix: everything.
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE key >= $1
    LIMIT $2
)

-- name: CacheIncrJsonb
-- Atomic increment of a JSON integer; an absent or expired entry starts from
-- the delta with the given TTL, a live one keeps its expiry (as Redis INCR).
INSERT INTO {table} AS c (key, value, expires_at)
VALUES ($1, to_jsonb($2::bigint), now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = CASE
            WHEN c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now())
                THEN excluded.value
            ELSE to_jsonb((c.value)::bigint + $2::bigint)
        END,
        expires_at = CASE
            WHEN c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now())
                THEN excluded.expires_at
            ELSE c.expires_at
        END,
        lease_until = NULL
RETURNING (value)::bigint

-- name: CacheIncrBytea
-- As CacheIncrJsonb for byte values holding a decimal integer, as Redis does.
INSERT INTO {table} AS c (key, value, expires_at)
VALUES ($1, convert_to($2::bigint::text, 'UTF8'), now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = CASE
            WHEN c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now())
                THEN excluded.value
            ELSE convert_to((convert_from(c.value, 'UTF8')::bigint + $2::bigint)::text, 'UTF8')
        END,
        expires_at = CASE
            WHEN c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now())
                THEN excluded.expires_at
            ELSE c.expires_at
        END,
        lease_until = NULL
RETURNING convert_from(value, 'UTF8')::bigint

-- name: CacheLease
-- get_or_compute: takes the right to compute a missing or expired key for $2 ms,
-- unless someone else holds it. A row comes back to the winner only; the row
-- lock of ON CONFLICT makes concurrent callers line up, and the WHERE, checked
-- against the latest row, lets exactly one through.
INSERT INTO {table} AS c (key, value, expires_at, lease_until)
VALUES ($1, NULL, NULL, now() + $2::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET lease_until = excluded.lease_until
    WHERE (c.value IS NULL OR (c.expires_at IS NOT NULL AND c.expires_at <= now()))
      AND (c.lease_until IS NULL OR c.lease_until <= now())
RETURNING true

-- name: CacheLeaseRelease
-- The computation failed: let the next caller try.
UPDATE {table} SET lease_until = NULL WHERE key = $1

-- name: CacheSweep
-- Deletes up to $1 expired entries and abandoned placeholders. There is no index
-- on expires_at (it would make every write non-HOT), so this scans; LIMIT stops
-- it early, and SKIP LOCKED keeps it from waiting on writers.
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE (lease_until IS NULL OR lease_until <= now())
      AND ((expires_at IS NOT NULL AND expires_at <= now()) OR value IS NULL)
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)

-- name: CacheEvict
-- Keeps the newest $1 entries (by insertion): deletes up to $2 of the rest,
-- oldest first, reading the created_at index from its newest end.
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    ORDER BY created_at DESC, key DESC
    OFFSET $1
    LIMIT $2
    FOR UPDATE SKIP LOCKED
)
