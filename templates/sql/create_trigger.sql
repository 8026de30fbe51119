CREATE TRIGGER {{ trigger.name | quote }}
    {{ trigger.definition }};
