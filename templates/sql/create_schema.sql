CREATE SCHEMA IF NOT EXISTS {{ schema | quote }};
