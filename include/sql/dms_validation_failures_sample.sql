-- The first failures of one DMS task: table, key and failure type (DETAILS holds row values and stays here).
SELECT "TABLE_OWNER"::text AS table_owner,
       "TABLE_NAME"::text AS table_name,
       "KEY_TYPE"::text AS key_type,
       "KEY"::text AS key,
       "FAILURE_TYPE"::text AS failure_type,
       "FAILURE_TIME" AS failure_time
FROM {schema}.awsdms_validation_failures_v1
WHERE "TASK_NAME" = %(task_name)s
ORDER BY "FAILURE_TIME", 1, 2, 4
LIMIT %(limit)s
