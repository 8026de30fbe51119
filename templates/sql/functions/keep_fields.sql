-- Row trigger function: keeps the derived columns added to {{ table }} after it held rows
-- (plain columns, so adding one rewrote nothing), set from the same expressions a stored
-- generated column would use.
CREATE OR REPLACE FUNCTION {{ schema | quote }}.{{ function | quote }}()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
{%- for c in columns %}
    NEW.{{ c.column | quote }} := {{ c.expr }};
{%- endfor %}
    RETURN NEW;
END
$fn$;
