-- RFC 7386 JSON merge patch: objects merge key by key, a `null` in the patch
-- removes the key, any other value replaces. Used by document patch_merge.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_jsonb_merge_patch"(target jsonb, patch jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN jsonb_typeof(patch) IS DISTINCT FROM 'object' THEN patch
        ELSE (
            SELECT coalesce(jsonb_object_agg(key, value), '{}'::jsonb)
            FROM (
                SELECT t.key, t.value
                FROM jsonb_each(CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END) AS t
                WHERE NOT patch ? t.key
                UNION ALL
                SELECT p.key, {{ schema | quote }}."pgstack_jsonb_merge_patch"(target -> p.key, p.value)
                FROM jsonb_each(patch) AS p
                WHERE jsonb_typeof(p.value) <> 'null'
            ) AS merged
        )
    END
$fn$;
