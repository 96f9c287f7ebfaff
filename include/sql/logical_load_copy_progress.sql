SELECT n.nspname::text AS schema, c.relname::text AS table_name, p.tuples_processed, p.bytes_processed
  FROM pg_stat_progress_copy p
  JOIN pg_class c ON c.oid = p.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE p.datname = %(database)s;
