-- Whether DMS has created its validation failures table in the control schema (target database).
SELECT EXISTS (
    SELECT 1
    FROM pg_catalog.pg_class c
    JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = %(schema)s
      AND c.relname = 'awsdms_validation_failures_v1'
) AS present
