SELECT tables, chunks, rows_compared, completed_at IS NOT NULL AS complete
FROM {schema}.validation_runs WHERE validation_id = %(validation_id)s
