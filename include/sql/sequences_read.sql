-- Sequence states of the migrated schemas; last_value is NULL until nextval/setval has been called.
SELECT c.oid,
       n.nspname AS schema_name,
       c.relname AS sequence_name,
       format_type(s.seqtypid, NULL) AS data_type,
       s.seqstart AS start_value,
       s.seqincrement AS increment_by,
       s.seqmin AS min_value,
       s.seqmax AS max_value,
       s.seqcycle AS cycle,
       has_sequence_privilege(c.oid, 'SELECT,USAGE') AS readable,
       CASE WHEN has_sequence_privilege(c.oid, 'SELECT,USAGE') THEN pg_sequence_last_value(c.oid) END AS last_value
  FROM pg_sequence s
  JOIN pg_class c ON c.oid = s.seqrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s::text[])
 ORDER BY n.nspname, c.relname;
