DROP FUNCTION {{ schema | quote }}.{{ name | quote }}({{ args }});
