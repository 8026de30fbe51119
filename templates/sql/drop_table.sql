DROP TABLE {{ schema | quote }}.{{ table | quote }};
