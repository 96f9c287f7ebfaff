SELECT tables, chunks, rows_compared, completed_at IS NOT NULL AS complete, schemas, by_schema,
       to_char(completed_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"') AS compared_at
FROM {schema}.validation_runs WHERE validation_id = %(validation_id)s
