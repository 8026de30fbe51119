DROP INDEX CONCURRENTLY IF EXISTS {{ schema | quote }}.{{ index.name | quote }};
CREATE {% if index.unique %}UNIQUE {% endif %}INDEX CONCURRENTLY {{ index.name | quote }}
    ON {{ schema | quote }}.{{ index.table | quote }}{% if index.method %} USING {{ index.method }}{% endif %} ({{ index.keys }})
{%- if index.with %}
    WITH ({% for key in index.with | keys | sort %}{{ key }} = {{ index.with[key] }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif %}
{%- if index.predicate %}
    WHERE {{ index.predicate }}
{%- endif %};
