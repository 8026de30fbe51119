ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ADD COLUMN {% include "sql/column.sql" %};
{%- if column.storage %}
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ALTER COLUMN {{ column.name | quote }} SET STORAGE {{ column.storage }};
{%- endif %}
