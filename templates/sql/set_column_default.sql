ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ALTER COLUMN {{ column | quote }} {% if default %}SET DEFAULT {{ default }}{% else %}DROP DEFAULT{% endif %};
