-- Requires the `{{ name }}` extension, version {{ min_version }} or later: creates it when the server
-- has it installed and the role may create it; otherwise stops with the command to run.
DO $pgstack$
DECLARE
    installed text;
BEGIN
    SELECT extversion INTO installed FROM pg_extension WHERE extname = {{ name | literal }};
    IF installed IS NULL THEN
        IF NOT EXISTS (SELECT 1 FROM pg_available_extensions WHERE name = {{ name | literal }}) THEN
            RAISE EXCEPTION 'pgstack: the PostgreSQL extension "{{ name }}" is not installed on this server'
                USING HINT = {{ install_hint | literal }};
        END IF;
        BEGIN
            CREATE EXTENSION IF NOT EXISTS {{ name | quote }};
        EXCEPTION WHEN insufficient_privilege THEN
            RAISE EXCEPTION 'pgstack: this role may not create the extension "{{ name }}"'
                USING HINT = 'ask a superuser to run: CREATE EXTENSION {{ name }}; in database ' || current_database() || ', then migrate again';
        END;
        SELECT extversion INTO installed FROM pg_extension WHERE extname = {{ name | literal }};
    END IF;
    IF string_to_array(regexp_replace(installed, '[^0-9.].*$', ''), '.')::int[] < {{ min_version_array | literal }}::int[] THEN
        RAISE EXCEPTION 'pgstack: the extension "{{ name }}" is version %, older than {{ min_version }}', installed
            USING HINT = 'run: ALTER EXTENSION {{ name }} UPDATE; (after installing a newer release on the server)';
    END IF;
END
$pgstack$;
