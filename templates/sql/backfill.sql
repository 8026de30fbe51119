DO $backfill$
DECLARE
    done {{ key_type }};
    upto {{ key_type }};
BEGIN
    LOOP
        SELECT b.k INTO upto FROM (
            SELECT {{ key | quote }} AS k FROM {{ schema | quote }}.{{ table | quote }}
            WHERE done IS NULL OR {{ key | quote }} > done
            ORDER BY {{ key | quote }} LIMIT {{ batch }}
        ) AS b ORDER BY b.k DESC LIMIT 1;
        EXIT WHEN upto IS NULL;
        UPDATE {{ schema | quote }}.{{ table | quote }}
            SET {{ column | quote }} = {{ expr }}
            WHERE (done IS NULL OR {{ key | quote }} > done) AND {{ key | quote }} <= upto;
        done := upto;
        COMMIT;
    END LOOP;
END
$backfill$;
