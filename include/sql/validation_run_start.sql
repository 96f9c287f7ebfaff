INSERT INTO {schema}.validation_runs AS r (validation_id) VALUES (%(validation_id)s)
ON CONFLICT (validation_id) DO UPDATE SET started_at = now(), completed_at = NULL
