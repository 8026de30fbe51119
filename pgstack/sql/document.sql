-- Document statements. `{table}` is the facility's checked, quoted table name,
-- `{schema}` its quoted schema (where the pgstack_jsonb_* helper functions live)
-- and `{column}` a declared field's generated column; values are always bound.

-- name: DocInsert
INSERT INTO {table} (doc)
VALUES ($1)
RETURNING id, version, created_at, updated_at

-- name: DocGet
SELECT id, doc, version, created_at, updated_at
FROM {table}
WHERE id = $1

-- name: DocReplace
-- Optimistic concurrency in one round trip: the UPDATE matches only the
-- expected version; the second subquery reads the snapshot from before it, so
-- a conflict reports the version actually found (NULL: no such document).
WITH updated AS (
    UPDATE {table}
    SET doc = $2, version = version + 1, updated_at = now()
    WHERE id = $1 AND version = $3
    RETURNING version
)
SELECT (SELECT version FROM updated) AS new_version,
       (SELECT version FROM {table} WHERE id = $1) AS current_version

-- name: DocPatchMerge
-- RFC 7386 JSON merge patch, applied on the server: objects merge key by key,
-- `null` removes a key, anything else replaces. Atomic without a version check.
UPDATE {table}
SET doc = {schema}.pgstack_jsonb_merge_patch(doc, $2),
    version = version + 1,
    updated_at = now()
WHERE id = $1
RETURNING version

-- name: DocPatchSet
-- Sets the value at a path, creating missing objects on the way.
UPDATE {table}
SET doc = {schema}.pgstack_jsonb_set_path(doc, $2::text[], $3),
    version = version + 1,
    updated_at = now()
WHERE id = $1
RETURNING version

-- name: DocDelete
DELETE FROM {table}
WHERE id = $1

-- name: DocFindContaining
-- `@>` is what the GIN index (jsonb_path_ops or jsonb_ops) serves.
SELECT id, doc, version, created_at, updated_at
FROM {table}
WHERE doc @> $1 AND id > $2
ORDER BY id
LIMIT $3

-- name: DocFindByField
-- Served by the declared field's B-tree or unique index.
SELECT id, doc, version, created_at, updated_at
FROM {table}
WHERE {column} = $1 AND id > $2
ORDER BY id
LIMIT $3

-- name: DocList
-- Keyset pagination on the primary key: page N costs what page 1 costs.
SELECT id, doc, version, created_at, updated_at
FROM {table}
WHERE id > $1
ORDER BY id
LIMIT $2
