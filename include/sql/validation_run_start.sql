-- A full pass starts (again): the run's scope is recorded and anything an earlier pass left is forgotten.
INSERT INTO {schema}.validation_runs AS r (validation_id, run_id, schemas)
VALUES (%(validation_id)s, %(run_id)s, %(schemas)s)
ON CONFLICT (validation_id) DO UPDATE SET
    run_id = excluded.run_id, schemas = excluded.schemas, tables = NULL, chunks = NULL, rows_compared = NULL,
    by_schema = NULL, started_at = now(), completed_at = NULL
