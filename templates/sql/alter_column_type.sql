ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ALTER COLUMN {{ column.name | quote }} TYPE {{ column.sql_type }}
{%- if column.collation %} COLLATE {{ column.collation | quote }}{% endif %}
    USING {{ using }};
