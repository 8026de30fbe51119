-- Key-value statements. `{table}` is the facility's checked, quoted table name and
-- `{value_type}` its value column type (jsonb or bytea); values are always bound.
--
-- Every kv table has `expires_at`; it stays NULL unless the facility declares
-- `expiry = true`. A row whose `expires_at` has passed is absent for every read
-- and is replaced by writes as if it were not there; `sweep` deletes such rows.

-- name: KvGet
SELECT value, version, updated_at, expires_at
FROM {table}
WHERE key = $1
  AND (expires_at IS NULL OR expires_at > now())

-- name: KvGetMany
SELECT key, value, version, updated_at, expires_at
FROM {table}
WHERE key = ANY((SELECT $1::text[])::text[])
  AND (expires_at IS NULL OR expires_at > now())

-- name: KvExists
SELECT EXISTS (
    SELECT 1 FROM {table}
    WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())
)

-- name: KvSet
-- Upsert. $3 is the time to live in milliseconds, NULL for none; a write always
-- states its expiry, as Redis SET does.
INSERT INTO {table} AS t (key, value, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        version = t.version + 1,
        updated_at = now(),
        expires_at = excluded.expires_at
RETURNING version

-- name: KvSetIfAbsent
-- Inserts, or takes over a row that has expired; a live row is left alone and
-- nothing is returned.
INSERT INTO {table} AS t (key, value, expires_at)
VALUES ($1, $2, now() + $3::bigint * interval '1 millisecond')
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        version = t.version + 1,
        updated_at = now(),
        expires_at = excluded.expires_at
    WHERE t.expires_at IS NOT NULL AND t.expires_at <= now()
RETURNING version

-- name: KvCompareAndSet
-- One round trip: the UPDATE only matches the expected version; the second
-- subquery reads the snapshot from before the UPDATE, so on a conflict it tells
-- the caller what the version actually was (NULL: the key is absent).
WITH updated AS (
    UPDATE {table}
    SET value = $2,
        version = version + 1,
        updated_at = now(),
        expires_at = now() + $4::bigint * interval '1 millisecond'
    WHERE key = $1
      AND version = $3
      AND (expires_at IS NULL OR expires_at > now())
    RETURNING version
)
SELECT (SELECT version FROM updated) AS new_version,
       (SELECT version FROM {table}
        WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())) AS current_version

-- name: KvDelete
-- Returns one row if a live key was deleted (an expired one counts as absent).
DELETE FROM {table}
WHERE key = $1
RETURNING (expires_at IS NULL OR expires_at > now()) AS was_live

-- name: KvSetMany
-- One statement for the whole batch. Rows go in key order so that two batches
-- touching the same keys lock them in the same order and cannot deadlock; the
-- caller removes duplicate keys first (ON CONFLICT may touch a row only once).
INSERT INTO {table} AS t (key, value, expires_at)
SELECT k, v, now() + $3::bigint * interval '1 millisecond'
FROM unnest($1::text[], $2::{value_type}[]) AS batch(k, v)
ORDER BY k
ON CONFLICT (key) DO UPDATE
    SET value = excluded.value,
        version = t.version + 1,
        updated_at = now(),
        expires_at = excluded.expires_at
RETURNING key, version

-- name: KvScanPrefix
-- A range on the `COLLATE "C"` primary key: the B-tree serves it (unlike the
-- seed's LIKE on a default-collation column). $2 is the smallest string
-- greater than every key starting with the prefix; $3 the cursor ('' at first).
SELECT key, value, version, updated_at, expires_at
FROM {table}
WHERE key >= $1 AND key < $2 AND key > $3
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY key
LIMIT $4

-- name: KvScanFrom
-- As KvScanPrefix for prefixes with no upper bound (the empty prefix).
SELECT key, value, version, updated_at, expires_at
FROM {table}
WHERE key >= $1 AND key > $2
  AND (expires_at IS NULL OR expires_at > now())
ORDER BY key
LIMIT $3

-- name: KvExpire
-- Sets or clears the time to live of a live key.
UPDATE {table}
SET expires_at = now() + $2::bigint * interval '1 millisecond'
WHERE key = $1 AND (expires_at IS NULL OR expires_at > now())
RETURNING version

-- name: KvSweep
-- Deletes up to $1 expired rows. SKIP LOCKED keeps two sweepers (or a sweeper
-- and a writer) from waiting on each other; the partial index on expires_at
-- finds the rows without a scan.
DELETE FROM {table}
WHERE key IN (
    SELECT key FROM {table}
    WHERE expires_at IS NOT NULL AND expires_at <= now()
    LIMIT $1
    FOR UPDATE SKIP LOCKED
)
