-- Enqueues one job of queue `{{ table }}` from SQL (a trigger, psql, another service's
-- connection) and writes the same row the runtime's enqueue does. Returns the job's id; with
-- a unique key already waiting or running, that job's id. run_at NULL means now.
CREATE OR REPLACE FUNCTION {{ schema | quote }}.{{ function | quote }}(
    kind text,
    payload {{ payload_type }},
    run_at timestamptz DEFAULT NULL,
{%- if priorities %}
    priority smallint DEFAULT 0,
{%- endif %}
    max_attempts integer DEFAULT {{ max_attempts }}{% if unique %},
    unique_key text DEFAULT NULL{% endif %}
)
RETURNS bigint
LANGUAGE plpgsql
AS $fn$
-- The parameters are read by position; their names are for callers.
#variable_conflict use_column
DECLARE
    job_id bigint;
BEGIN
    INSERT INTO {{ schema | quote }}.{{ table | quote }} AS q
        (kind, payload, priority, visible_at, max_attempts, unique_key)
    VALUES ($1, $2, {% if priorities %}$4{% else %}0{% endif %}, coalesce($3, now()), {% if priorities %}$5{% else %}$4{% endif %}, {% if unique %}{% if priorities %}$6{% else %}$5{% endif %}{% else %}NULL{% endif %})
{%- if unique %}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        DO UPDATE SET unique_key = excluded.unique_key
{%- endif %}
    RETURNING q.id INTO job_id;
    RETURN job_id;
END
$fn$;
