-- Tables whose UPDATE/DELETE cannot be replicated: no primary key under the default replica
-- identity, replica identity NOTHING, or a replica identity index that is missing. is_owner: the
-- connected role may ALTER the table (it owns it, directly or through a role, or is superuser).
SELECT n.nspname AS schema_name,
       c.relname AS table_name,
       format('%%I.%%I', n.nspname, c.relname) AS qualified,
       c.relreplident::text AS replident,
       pg_has_role(c.relowner, 'USAGE') AS is_owner,
       current_user AS role_name
  FROM pg_class c
  JOIN pg_namespace n ON n.oid = c.relnamespace
 WHERE n.nspname = ANY(%(schemas)s::text[])
   AND c.relkind = 'r'
   AND CASE c.relreplident
           WHEN 'f' THEN false
           WHEN 'n' THEN true
           WHEN 'd' THEN NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisprimary)
           WHEN 'i' THEN NOT EXISTS (SELECT FROM pg_index i WHERE i.indrelid = c.oid AND i.indisreplident)
       END
 ORDER BY n.nspname, c.relname;
