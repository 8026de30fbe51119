-- Requires the `{{ name }}` extension, version {{ min_version }} or later: creates it when the server
-- has it installed and the role may create it; otherwise stops with the command to run.
DO $pgstack$
DECLARE
    installed text;
BEGIN
    SELECT extversion INTO installed FROM pg_extension WHERE extname = {{ name | literal }};
    IF installed IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = {{ name | literal }}) THEN
            RAISE EXCEPTION '%', {{ ("pgstack: the PostgreSQL extension \"" ~ name ~ "\" is not installed on this server; " ~ install_hint) | literal }};
        END IF;
        BEGIN
            CREATE EXTENSION IF NOT EXISTS {{ name | quote }};
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pgstack: this role may not create the extension "{{ name }}"; ask a superuser to run `CREATE EXTENSION {{ name }};` in database %, then migrate again', current_database();
        END;
        SELECT extversion INTO installed FROM pg_extension WHERE extname = {{ name | literal }};
    END IF;
    IF string_to_array(regexp_replace(installed, '[^0-9.].*$', ''), '.')::int[] < {{ min_version_array | literal }}::int[] THEN
        RAISE EXCEPTION 'pgstack: the extension "{{ name }}" is version %, older than {{ min_version }}; install a newer release on the server, then run `ALTER EXTENSION {{ name }} UPDATE;`', installed;
    END IF;
END
$pgstack$;
