-- Record the previous replica identity; an open record (a rerun) keeps the first one.
INSERT INTO {schema}.replica_identity_changes AS r (schema_name, table_name, previous)
VALUES (%(schema_name)s, %(table_name)s, %(previous)s)
ON CONFLICT (schema_name, table_name) DO UPDATE
   SET previous = EXCLUDED.previous, changed_at = clock_timestamp(), restored_at = NULL
 WHERE r.restored_at IS NOT NULL;
