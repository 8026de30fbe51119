-- Vector collection statements. Unlike the other facilities' files, a collection's column
-- list comes from its spec, so these take more placeholders, each filled once per handle
-- from checked identifiers (pgstack/src/vector/sql.rs):
--   {table}         the quoted table name
--   {columns}       "id", then every declared field: what a row reads as (no embedding)
--   {key_where}     "id" = $1, or "<partition field>" = $2 AND "id" = $1 when partitioned
--   {vtype}         the embedding's type, e.g. vector(1536)
--   {schema}        the quoted schema
-- Searches are built per call in search.rs: their filters, strategy and settings vary.

-- name: VectorUpsert
-- One statement per chunk of rows, passed as one JSON array: json_to_recordset declares
-- each column's type, so values are checked by PostgreSQL's own casts. The insert and
-- select lists are "id", "embedding" and the fields, the conflict target is the key, and
-- every non-key column is updated. The version is updated_at in microseconds.
INSERT INTO {table} ({insert})
SELECT {select}
FROM json_to_recordset($1::json) AS r({record_types})
ON CONFLICT ({conflict}) DO UPDATE SET {update}
RETURNING {returning}, floor(extract(epoch FROM "updated_at") * 1000000)::bigint AS "version"

-- name: VectorGet
SELECT {columns}, "embedding"::text AS "embedding" FROM {table} WHERE {key_where}

-- name: VectorDelete
DELETE FROM {table} WHERE {key_where}

-- name: VectorCount
SELECT count(*) AS n FROM {table}

-- name: VectorCountTenant
-- Partitioned collections only: $1 is the tenant.
SELECT count(*) AS n FROM {table} WHERE {tenant} = $1

-- name: VectorSetEmbedding
-- The embedding's parameter follows the key's: $2, or $3 when partitioned.
UPDATE {table} SET "embedding" = {embedding_param}::{vtype} WHERE {key_where}

-- name: VectorEnsurePartition
-- Creates the tenant's LIST partition (with its ANN index) unless it exists.
SELECT {schema}."pgstack_ensure_list_partition"($1, $2)
