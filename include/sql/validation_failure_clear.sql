-- A chunk that matches now: any failure recorded for it is resolved.
UPDATE {schema}.validation_failures
SET state = 'clean', last_checked = now(), source_rows = %(source_rows)s, target_rows = %(target_rows)s,
    source_digest = %(source_digest)s, target_digest = %(target_digest)s
WHERE validation_id = %(validation_id)s AND table_schema = %(table_schema)s AND table_name = %(table_name)s
  AND chunk_key = %(chunk_key)s AND state <> 'clean'
