-- Statement-level trigger function: wakes the queue's idle workers, on the
-- channel given as the trigger's argument, with one NOTIFY per statement
-- (PostgreSQL folds identical notifications within a transaction).
--
-- It notifies only while a worker is waiting (registered in
-- pgstack_queue_waiters before it blocks, refreshed while it waits). A NOTIFY
-- makes its transaction take a database-wide lock at commit, which caps
-- notifying commits at a few thousand a second; when every worker is busy no
-- one needs waking, so enqueues skip it. Workers also poll, so a wake-up lost
-- to a race costs at most one poll interval.
CREATE OR REPLACE FUNCTION {{ schema | quote }}."pgstack_notify"()
RETURNS trigger
LANGUAGE plpgsql
AS $fn$
BEGIN
    IF EXISTS (
        SELECT 1 FROM {{ schema | quote }}."pgstack_queue_waiters"
        WHERE channel = TG_ARGV[0] AND seen_at > now() - interval '5 minutes'
    ) THEN
        PERFORM pg_notify(TG_ARGV[0], '');
    END IF;
    RETURN NULL;
END
$fn$;
