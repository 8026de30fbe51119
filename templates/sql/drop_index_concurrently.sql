DROP INDEX CONCURRENTLY IF EXISTS {{ schema | quote }}.{{ name | quote }};
