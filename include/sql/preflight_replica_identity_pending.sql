-- Recorded changes not restored yet, with the table's replica identity now (NULL: the table is gone).
SELECT r.schema_name,
       r.table_name,
       format('%%I.%%I', r.schema_name, r.table_name) AS qualified,
       r.previous::text AS previous,
       c.relreplident::text AS current
  FROM {schema}.replica_identity_changes r
  LEFT JOIN pg_namespace n ON n.nspname = r.schema_name
  LEFT JOIN pg_class c ON c.relnamespace = n.oid AND c.relname = r.table_name AND c.relkind = 'r'
 WHERE r.restored_at IS NULL
 ORDER BY r.schema_name, r.table_name;
