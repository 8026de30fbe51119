{%- if table.partition_of -%}
CREATE {% if table.unlogged %}UNLOGGED {% endif %}TABLE {{ schema | quote }}.{{ table.name | quote }}
    PARTITION OF {{ schema | quote }}.{{ table.partition_of.parent | quote }} {{ table.partition_of.bound }}
{%- if table.storage %}
WITH ({% for key in table.storage | keys | sort %}{{ key }} = {{ table.storage[key] }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif %};
{%- else -%}
CREATE {% if table.unlogged %}UNLOGGED {% endif %}TABLE {{ schema | quote }}.{{ table.name | quote }} (
{%- for column in table.columns %}
    {% include "sql/column.sql" %},
{%- endfor %}
{%- for check in table.checks | default(value=[]) %}
    CONSTRAINT {{ check.name | quote }} CHECK ({{ check.expr }}),
{%- endfor %}
    CONSTRAINT {{ (table.name ~ "_pkey") | quote }} PRIMARY KEY ({{ [c | quote for c in table.primary_key] | join(sep=", ") }})
)
{%- if table.partition_by %}
PARTITION BY {{ table.partition_by }}
{%- endif %}
{%- if table.storage %}
WITH ({% for key in table.storage | keys | sort %}{{ key }} = {{ table.storage[key] }}{% if not loop.last %}, {% endif %}{% endfor %})
{%- endif %};
{%- endif %}
{%- for column in table.columns %}
{%- if column.storage %}
ALTER TABLE {{ schema | quote }}.{{ table.name | quote }}
    ALTER COLUMN {{ column.name | quote }} SET STORAGE {{ column.storage }};
{%- endif %}
{%- endfor %}
{%- if table.comment %}
COMMENT ON TABLE {{ schema | quote }}.{{ table.name | quote }} IS {{ table.comment | literal }};
{%- endif %}
