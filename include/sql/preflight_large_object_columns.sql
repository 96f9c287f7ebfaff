-- Columns that hold large-object references (type oid, or the lo extension's domain).
SELECT format('%%I.%%I.%%I', n.nspname, c.relname, a.attname) AS qualified_column,
       format_type(a.atttypid, a.atttypmod) AS type_name
  FROM pg_attribute a
  JOIN pg_class c ON c.oid = a.attrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  JOIN pg_type t ON t.oid = a.atttypid
 WHERE n.nspname = ANY(%(schemas)s::text[])
   AND c.relkind IN ('r', 'p')
   AND a.attnum > 0
   AND NOT a.attisdropped
   AND (a.atttypid = 'oid'::regtype OR t.typname = 'lo')
 ORDER BY n.nspname, c.relname, a.attnum;
