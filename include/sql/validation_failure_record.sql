-- A chunk whose digests differ: new ones start pending, each recheck counts, N rechecks make it persistent.
INSERT INTO {schema}.validation_failures AS f
    (validation_id, table_schema, table_name, chunk_key, key_columns, chunk_lo, chunk_hi,
     source_rows, target_rows, source_digest, target_digest)
VALUES (%(validation_id)s, %(table_schema)s, %(table_name)s, %(chunk_key)s, %(key_columns)s, %(chunk_lo)s,
        %(chunk_hi)s, %(source_rows)s, %(target_rows)s, %(source_digest)s, %(target_digest)s)
ON CONFLICT (validation_id, table_schema, table_name, chunk_key) DO UPDATE SET
    source_rows = excluded.source_rows, target_rows = excluded.target_rows,
    source_digest = excluded.source_digest, target_digest = excluded.target_digest,
    last_checked = now(),
    rechecks = CASE WHEN f.state = 'clean' THEN 0 ELSE f.rechecks + 1 END,
    state = CASE WHEN f.state <> 'clean' AND f.rechecks + 1 >= %(max_rechecks)s THEN 'persistent' ELSE 'pending' END
RETURNING state, rechecks
