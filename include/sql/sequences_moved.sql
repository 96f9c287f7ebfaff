-- Sequence states of the migrated schemas; last_value is NULL until nextval/setval has been called. A
-- sequence not called since setval(..., false) or ALTER SEQUENCE RESTART hands out its stored last_value
-- next, which pg_sequence_last_value does not show: uncalled_value reads it (query_to_xml runs the read).
-- Given no oids, every sequence (the presync's read). Inside the write-blocked window: the sequences whose
-- state is not the one set on the target ahead of the fence (given as oids, last values and, for the ones
-- not called then, the values they would hand out next), and any sequence not set then; only those are
-- described. The cost per unmoved sequence is one pg_sequence_last_value, and for one not called ahead of
-- the fence and still not called, one read of its stored value too (so one positioned with
-- setval(..., false) in between is seen). The privilege was checked ahead of the fence for the ones set then.
WITH synced AS (
    SELECT p.seq, p.last_value, p.uncalled_value
      FROM unnest(%(oids)s::oid[], %(last_values)s::bigint[], %(uncalled_values)s::bigint[])
           AS p(seq, last_value, uncalled_value)
), listed AS MATERIALIZED (
    SELECT s.seqrelid AS oid
      FROM pg_sequence AS s
      JOIN pg_class AS c ON c.oid = s.seqrelid
     WHERE c.relnamespace IN (SELECT n.oid FROM pg_namespace AS n WHERE n.nspname = ANY(%(schemas)s::text[]))
), moved AS MATERIALIZED (
    SELECT l.oid, p.seq IS NOT NULL AS synced
      FROM listed AS l
      LEFT JOIN synced AS p ON p.seq = l.oid
     WHERE p.seq IS NULL OR pg_sequence_last_value(l.oid) IS DISTINCT FROM p.last_value
        OR (p.last_value IS NULL
            AND (xpath('/row/last_value/text()', query_to_xml(format('SELECT last_value FROM %%s', l.oid::regclass),
                                                               false, true, '')))[1]::text::bigint
                IS DISTINCT FROM p.uncalled_value)
), state AS MATERIALIZED (
    SELECT m.oid, n.nspname AS schema_name, c.relname AS sequence_name, s.seqtypid, s.seqstart, s.seqincrement,
           s.seqmin, s.seqmax, s.seqcycle, m.synced OR has_sequence_privilege(m.oid, 'SELECT,USAGE') AS readable
      FROM moved AS m
      JOIN pg_sequence AS s ON s.seqrelid = m.oid
      JOIN pg_class AS c ON c.oid = m.oid
      JOIN pg_namespace AS n ON n.oid = c.relnamespace
), valued AS MATERIALIZED (
    SELECT state.*, CASE WHEN readable THEN pg_sequence_last_value(oid) END AS last_value FROM state
)
SELECT oid, schema_name, sequence_name, format_type(seqtypid, NULL) AS data_type, seqstart AS start_value,
       seqincrement AS increment_by, seqmin AS min_value, seqmax AS max_value, seqcycle AS cycle, readable,
       last_value,
       CASE WHEN readable AND last_value IS NULL
            THEN (xpath('/row/last_value/text()', query_to_xml(format('SELECT last_value FROM %%s', oid::regclass),
                                                                false, true, '')))[1]::text::bigint
       END AS uncalled_value
  FROM valued
 ORDER BY schema_name, sequence_name;
