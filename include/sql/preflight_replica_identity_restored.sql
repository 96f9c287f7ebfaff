UPDATE {schema}.replica_identity_changes
   SET restored_at = clock_timestamp()
 WHERE schema_name = %(schema_name)s AND table_name = %(table_name)s AND restored_at IS NULL;
