ALTER TABLE {{ schema | quote }}.{{ table | quote }} SET {% if unlogged %}UNLOGGED{% else %}LOGGED{% endif %};
