-- Sequence states of the migrated schemas; last_value is NULL until nextval/setval has been called. A
-- sequence not called since setval(..., false) or ALTER SEQUENCE RESTART hands out its stored last_value
-- next, which pg_sequence_last_value does not show: uncalled_value reads it (query_to_xml runs the read;
-- the number is cut out of its one-row document, as in sequences_uncalled_moved).
-- Given no oids, every sequence (the presync's read). Inside the write-blocked window: the sequences whose
-- last value is not the one set on the target ahead of the fence (given as oids and last values; NULL: not
-- called), and any sequence not set then; only those are described, so the cost per unmoved sequence is one
-- pg_sequence_last_value. One not called then and still not called reads NULL both times: whether its
-- stored value moved (setval(..., false)) is sequences_uncalled_moved's part. The privilege was checked
-- ahead of the fence for the ones set then.
WITH synced AS (
    SELECT p.seq, p.last_value
      FROM unnest(%(oids)s::oid[], %(last_values)s::bigint[]) AS p(seq, last_value)
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
            THEN split_part(split_part(query_to_xml(format('SELECT last_value FROM %%s', oid::regclass), false, true,
                                                    '')::text, '<last_value>', 2), '</last_value>', 1)::bigint
       END AS uncalled_value
  FROM valued
 ORDER BY schema_name, sequence_name;
