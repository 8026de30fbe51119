DROP TRIGGER {{ name | quote }} ON {{ schema | quote }}.{{ table | quote }};
