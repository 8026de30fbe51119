-- Statement-level trigger function: one NOTIFY per inserting statement, on the
-- channel given as the trigger's argument. PostgreSQL folds identical
-- notifications within a transaction, so a transaction wakes workers once.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_notify"()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    PERFORM pg_notify(TG_ARGV[0], '');
    RETURN NULL;
END
$fn$;
