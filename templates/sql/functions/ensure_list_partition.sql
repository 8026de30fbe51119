-- Creates the LIST partition of `parent` holding `value` unless it exists, and
-- returns its name: `<parent>_t_<first 12 hex digits of md5(value)>`. Vector
-- collections declared with `partition_by` call it before writing a new tenant,
-- so each tenant gets its own partition and its own ANN index (one tenant's
-- vectors never cost another's recall or speed).
--
-- The value is quoted with format('%L'); identifiers with '%I'. An advisory
-- lock per partition serialises concurrent first writes of the same tenant.
-- Creating a partition locks the parent briefly, once per tenant.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_ensure_list_partition"(parent text, value text)
RETURNS text
LANGUAGE plpgsql
AS $fn$
DECLARE
    partition text := parent || '_t_' || left(md5(value), 12);
BEGIN
    IF to_regclass(format('%I.%I', {{ schema | literal }}, partition)) IS NULL THEN
        PERFORM pg_advisory_xact_lock(hashtextextended({{ schema | literal }} || '.' || partition, 0));
        IF to_regclass(format('%I.%I', {{ schema | literal }}, partition)) IS NULL THEN
            BEGIN
                EXECUTE format(
                    'CREATE TABLE %I.%I PARTITION OF %I.%I FOR VALUES IN (%L)',
                    {{ schema | literal }}, partition, {{ schema | literal }}, parent, value
                );
            EXCEPTION WHEN duplicate_table OR unique_violation THEN
                -- Another session created it between the check and the lock.
                NULL;
            END;
        END IF;
    END IF;
    RETURN partition;
END
$fn$;
