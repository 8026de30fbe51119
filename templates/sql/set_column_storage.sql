ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ALTER COLUMN {{ column | quote }} SET STORAGE {{ storage }};
