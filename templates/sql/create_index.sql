CREATE {% if index.unique %}UNIQUE {% endif %}INDEX {{ index.name | quote }}
    ON {{ schema | quote }}.{{ index.table | quote }}{% if index.method %} USING {{ index.method }}{% endif %} ({{ index.keys }})
{%- if index.predicate %}
    WHERE {{ index.predicate }}
{%- endif %};
