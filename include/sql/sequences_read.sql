-- Sequence states of the migrated schemas; last_value is NULL until nextval/setval has been called. A
-- sequence not called since setval(..., false) or ALTER SEQUENCE RESTART hands out its stored last_value
-- next, which pg_sequence_last_value does not show: uncalled_value reads it (query_to_xml runs the read).
WITH seqs AS MATERIALIZED (
    SELECT c.oid, n.nspname AS schema_name, c.relname AS sequence_name, s.seqtypid, s.seqstart, s.seqincrement,
           s.seqmin, s.seqmax, s.seqcycle, has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable
      FROM pg_sequence s
      JOIN pg_class c ON c.oid = s.seqrelid
      JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE n.nspname = ANY(%(schemas)s::text[])
), state AS MATERIALIZED (
    SELECT seqs.*, CASE WHEN readable THEN pg_sequence_last_value(oid) END AS last_value FROM seqs
)
SELECT oid, schema_name, sequence_name, format_type(seqtypid, NULL) AS data_type, seqstart AS start_value,
       seqincrement AS increment_by, seqmin AS min_value, seqmax AS max_value, seqcycle AS cycle, readable,
       last_value,
       CASE WHEN readable AND last_value IS NULL
            THEN (xpath('/row/last_value/text()', query_to_xml(format('SELECT last_value FROM %%s', oid::regclass),
                                                                false, true, '')))[1]::text::bigint
       END AS uncalled_value
  FROM state
 ORDER BY schema_name, sequence_name;
