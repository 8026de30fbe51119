CREATE {% if table.unlogged %}UNLOGGED {% endif %}TABLE {{ schema | quote }}.{{ table.name | quote }} (
{%- for column in table.columns %}
    {% include "sql/column.sql" %},
{%- endfor %}
{%- for check in table.checks %}
    CONSTRAINT {{ check.name | quote }} CHECK ({{ check.expr }}),
{%- endfor %}
    CONSTRAINT {{ (table.name ~ "_pkey") | quote }} PRIMARY KEY ({{ [c | quote for c in table.primary_key] | join(sep=", ") }})
)
{%- if table.storage %}
WITH ({% for key, value in table.storage %}{{ key }} = {{ value }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif %};
