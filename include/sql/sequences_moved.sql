-- Sequence states of the migrated schemas; last_value is NULL until nextval/setval has been called. A
-- sequence not called since setval(..., false) or ALTER SEQUENCE RESTART hands out its stored last_value
-- next, which pg_sequence_last_value does not show: uncalled_value reads it (query_to_xml runs the read).
-- Given no oids, every sequence (the presync's read). Inside the write-blocked window: the sequences whose
-- state is not the one set on
-- the target ahead of the fence (given as oids and last values; NULL: never called), and any sequence not
-- set then. The privilege was checked ahead of the fence for the ones set then. A sequence that stays
-- uncalled but is moved with setval(..., false) between the two reads is not seen (its last value reads
-- NULL both times); only the ones returned get uncalled_value read.
WITH synced AS (
    SELECT p.seq, p.last_value
      FROM unnest(%(oids)s::oid[], %(last_values)s::bigint[]) AS p(seq, last_value)
), now AS MATERIALIZED (
    SELECT c.oid, n.nspname AS schema_name, c.relname AS sequence_name, s.seqtypid, s.seqstart, s.seqincrement,
           s.seqmin, s.seqmax, s.seqcycle, p.seq IS NOT NULL AS synced, p.last_value AS synced_value,
           p.seq IS NOT NULL OR has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable
      FROM pg_sequence s
      JOIN pg_class c ON c.oid = s.seqrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
      LEFT JOIN synced p ON p.seq = c.oid
     WHERE n.nspname = ANY(%(schemas)s::text[])
), state AS MATERIALIZED (
    SELECT now.*, CASE WHEN readable THEN pg_sequence_last_value(oid) END AS last_value FROM now
)
SELECT oid, schema_name, sequence_name, format_type(seqtypid, NULL) AS data_type, seqstart AS start_value,
       seqincrement AS increment_by, seqmin AS min_value, seqmax AS max_value, seqcycle AS cycle, readable,
       last_value,
       CASE WHEN readable AND last_value IS NULL
            THEN (xpath('/row/last_value/text()', query_to_xml(format('SELECT last_value FROM %%s', oid::regclass),
                                                                false, true, '')))[1]::text::bigint
       END AS uncalled_value
  FROM state
 WHERE NOT synced OR NOT readable OR last_value IS DISTINCT FROM synced_value
 ORDER BY schema_name, sequence_name;
