ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    DROP CONSTRAINT {{ name | quote }};
