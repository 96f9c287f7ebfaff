-- The tables a dump of the schemas reads, with a row estimate and their size (for progress and throughput).
SELECT n.nspname::text AS schema, c.relname::text AS table_name,
       GREATEST(c.reltuples, COALESCE(s.n_live_tup, 0), 0)::bigint AS rows_estimate,
       pg_table_size(c.oid) AS bytes
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid
 WHERE n.nspname = ANY(%(schemas)s) AND c.relkind IN ('r', 'p', 'm')
 ORDER BY 1, 2;
