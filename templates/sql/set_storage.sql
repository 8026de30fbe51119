{%- if set %}
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    SET ({% for key, value in set %}{{ key }} = {{ value }}{% if not loop.last %}, {% endif %}{% endfor %});
{%- endif %}
{%- if reset %}
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    RESET ({{ reset | join(sep=", ") }});
{%- endif %}
