-- Enqueues one job of queue `{{ table }}` from SQL (a trigger, psql, another service's
-- connection) and writes the same row the runtime's enqueue does. Returns the job's id; with
-- a unique key already waiting or running, that job's id. run_at NULL means now; jobs with
-- one group_key run one at a time in enqueue order.
CREATE OR REPLACE FUNCTION {{ schema | quote }}.{{ function | quote }}(
    kind text,
    payload {{ payload_type }},
    run_at timestamptz DEFAULT NULL,
{%- if priorities %}
    priority smallint DEFAULT 0,
{%- endif %}
    max_attempts integer DEFAULT {{ max_attempts }},
{%- if unique %}
    unique_key text DEFAULT NULL,
{%- endif %}
    group_key text DEFAULT NULL
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
        (kind, payload, priority, visible_at, max_attempts, unique_key, group_key)
    VALUES ($1, $2, {{ p_priority }}, coalesce($3, now()), {{ p_attempts }}, {{ p_unique }}, {{ p_group }})
{%- if unique %}
    ON CONFLICT (unique_key) WHERE unique_key IS NOT NULL
        DO UPDATE SET unique_key = excluded.unique_key
{%- endif %}
    RETURNING q.id INTO job_id;
    RETURN job_id;
END
$fn$;
