-- What a target database holds besides an empty public schema and the migration's control schema.
SELECT kind, name FROM (
    SELECT 'schema' AS kind, format('%%I', n.nspname) AS name
      FROM pg_namespace n
     WHERE n.nspname NOT IN ('public', 'information_schema', %(control_schema)s)
       AND n.nspname NOT LIKE 'pg\_%%'
    UNION ALL
    SELECT CASE c.relkind WHEN 'S' THEN 'sequence' WHEN 'v' THEN 'view' WHEN 'm' THEN 'materialized view'
                          WHEN 'f' THEN 'foreign table' ELSE 'table' END,
           format('%%I.%%I', n.nspname, c.relname)
      FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
     WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')
       AND n.nspname NOT IN ('information_schema', %(control_schema)s) AND n.nspname NOT LIKE 'pg\_%%'
    UNION ALL
    SELECT 'function', format('%%I.%%I', n.nspname, p.proname)
      FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
     WHERE n.nspname NOT IN ('information_schema', %(control_schema)s) AND n.nspname NOT LIKE 'pg\_%%'
       AND NOT EXISTS (SELECT 1 FROM pg_depend d WHERE d.objid = p.oid AND d.deptype = 'e')
    UNION ALL
    SELECT 'extension', format('%%I', e.extname) FROM pg_extension e WHERE e.extname <> 'plpgsql'
) found
ORDER BY kind, name;
