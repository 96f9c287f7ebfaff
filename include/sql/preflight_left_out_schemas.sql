-- User schemas holding tables that are not accounted for (migrated, excluded or the control schema).
-- The target is a clone of the whole database: changes in such a schema after the clone point would be
-- left behind. PostgreSQL's own schemas and tables that belong to an extension are not user data here.
SELECT n.nspname AS name, count(*)::int AS tables
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE c.relkind IN ('r', 'p')
   AND n.nspname <> 'information_schema'
   AND n.nspname NOT LIKE 'pg\_%%'
   AND NOT (n.nspname = ANY(%(accounted)s::text[]))
   AND NOT EXISTS (SELECT FROM pg_depend d
                    WHERE d.classid = 'pg_class'::regclass AND d.objid = c.oid AND d.deptype = 'e')
 GROUP BY n.nspname
 ORDER BY n.nspname;
