ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ALTER COLUMN {{ column | quote }} {% if not_null %}SET{% else %}DROP{% endif %} NOT NULL;
