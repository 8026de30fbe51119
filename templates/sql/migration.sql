-- {{ header }}
-- {{ name }} ({{ direction }}): {{ summary }}
{%- for change in changes %}

-- {{ change.summary }}
{%- for statement in change.statements %}
{{ statement }}
{%- endfor %}
{%- endfor %}
