-- Unlogged tables are not WAL-logged: a clone or snapshot restores them empty and CDC never sees them.
SELECT format('%%I.%%I', n.nspname, c.relname) AS qualified
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s::text[])
   AND c.relkind IN ('r', 'p')
   AND c.relpersistence = 'u'
 ORDER BY n.nspname, c.relname;
