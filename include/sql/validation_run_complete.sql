UPDATE {schema}.validation_runs
SET tables = %(tables)s, chunks = %(chunks)s, rows_compared = %(rows_compared)s, by_schema = %(by_schema)s,
    completed_at = now()
WHERE validation_id = %(validation_id)s
