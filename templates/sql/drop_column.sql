ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    DROP COLUMN {{ column | quote }};
