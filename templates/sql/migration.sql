-- {{ header }}
-- {{ name }} ({{ direction }}): {{ summary }}
{%- if no_transaction %}
{{ no_transaction }}: each statement commits on its own (CREATE INDEX CONCURRENTLY cannot run in a transaction)
{%- endif %}
{%- for change in changes %}

-- {{ change.summary }}
{%- for statement in change.statements %}
{{ statement }}
{%- endfor %}
{%- endfor %}
