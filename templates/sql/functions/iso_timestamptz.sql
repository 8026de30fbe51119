-- Casting text to timestamptz depends on the session's DateStyle and TimeZone,
-- so PostgreSQL will not use the cast in a generated column. Pinning both makes
-- the result depend on the text alone, which is what IMMUTABLE promises.
-- Document fields of type timestamptz hold ISO 8601 text.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_iso_timestamptz"(value text)
RETURNS timestamptz
LANGUAGE sql IMMUTABLE PARALLEL SAFE
SET datestyle = 'ISO, YMD'
SET timezone = 'UTC'
AS $fn$
    SELECT value::timestamptz
$fn$;
