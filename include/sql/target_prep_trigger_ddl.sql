-- User triggers enabled in the default (origin) mode; internal and constraint triggers stay as they are.
-- ONLY keeps each statement to its own table: a partitioned table's clones on partitions get their own line.
SELECT count(*)::int AS triggers,
       coalesce(string_agg(format('ALTER TABLE ONLY %%I.%%I ENABLE TRIGGER %%I;', n.nspname, c.relname, t.tgname),
                           E'\n' ORDER BY n.nspname, c.relname, t.tgname), '') AS enable_ddl,
       coalesce(string_agg(format('ALTER TABLE ONLY %%I.%%I DISABLE TRIGGER %%I;', n.nspname, c.relname, t.tgname),
                           E'\n' ORDER BY n.nspname, c.relname, t.tgname), '') AS disable_ddl
  FROM pg_trigger t
  JOIN pg_class c ON c.oid = t.tgrelid
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s::text[])
   AND NOT t.tgisinternal
   AND t.tgconstraint = 0
   AND t.tgenabled = 'O';
