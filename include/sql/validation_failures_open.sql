-- Chunks still mismatched (pending or persistent), in a stable order.
SELECT table_schema, table_name, chunk_key, key_columns, chunk_lo, chunk_hi, rechecks, state
FROM {schema}.validation_failures
WHERE validation_id = %(validation_id)s AND state <> 'clean'
ORDER BY table_schema, table_name, chunk_key
