COMMENT ON TABLE {{ schema | quote }}.{{ table | quote }} IS {% if comment %}{{ comment | literal }}{% else %}NULL{% endif %};
