{%- if set %}
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    SET ({% for key in set | keys | sort %}{{ key }} = {{ set[key] }}{% if not loop.last %}, {% endif %}{% endfor %});
{%- endif %}
{%- if reset %}
ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    RESET ({{ reset | join(sep=", ") }});
{%- endif %}
