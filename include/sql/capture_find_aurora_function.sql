-- Aurora builds this function into recent minors; look for it instead of calling it blind.
SELECT n.nspname AS schema_name, p.proname AS function_name
  FROM pg_proc p
  JOIN pg_namespace n ON n.oid = p.pronamespace
 WHERE p.proname = 'aurora_volume_logical_start_lsn'
   AND p.pronargs = 0
 ORDER BY n.nspname <> 'pg_catalog', n.nspname
 LIMIT 1;
