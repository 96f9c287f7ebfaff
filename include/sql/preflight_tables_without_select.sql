SELECT format('%%I.%%I', n.nspname, c.relname) AS qualified
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s::text[])
   AND c.relkind IN ('r', 'p')
   AND NOT has_table_privilege(c.oid, 'SELECT')
 ORDER BY n.nspname, c.relname;
