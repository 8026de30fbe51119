DROP INDEX {{ schema | quote }}.{{ name | quote }};
