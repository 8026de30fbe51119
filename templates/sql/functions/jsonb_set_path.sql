-- Sets `value` at `path`, creating missing objects on the way (jsonb_set alone
-- does nothing when an intermediate key is missing). A digit segment on an
-- array indexes it. Used by document patch_set.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_jsonb_set_path"(target jsonb, path text[], value jsonb)
RETURNS jsonb
LANGUAGE sql IMMUTABLE PARALLEL SAFE
AS $fn$
    SELECT CASE
        WHEN cardinality(path) = 0 THEN value
        WHEN jsonb_typeof(target) = 'array' AND path[1] ~ '^-?[0-9]+$' THEN
            jsonb_set(target, path[1:1],
                {{ schema | quote }}."pgstack_jsonb_set_path"(target -> (path[1]::int), path[2:], value), true)
        ELSE
            jsonb_set(
                CASE WHEN jsonb_typeof(target) = 'object' THEN target ELSE '{}'::jsonb END,
                path[1:1],
                {{ schema | quote }}."pgstack_jsonb_set_path"(
                    CASE WHEN jsonb_typeof(target) = 'object' THEN target -> path[1] END,
                    path[2:], value),
                true)
    END
$fn$;
