ALTER TABLE {{ schema | quote }}.{{ table | quote }}
    ADD CONSTRAINT {{ check.name | quote }} CHECK ({{ check.expr }});
