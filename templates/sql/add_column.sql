ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ADD COLUMN {% include "sql/column.sql" %};
