-- The distinct keys of one DMS task's validation failures (TASK_NAME is the task's resource id), oldest first.
SELECT "TABLE_OWNER"::text AS table_owner,
       "TABLE_NAME"::text AS table_name,
       "KEY"::text AS key,
       min("FAILURE_TIME") AS first_failure
FROM {schema}.awsdms_validation_failures_v1
WHERE "TASK_NAME" = %(task_name)s
GROUP BY 1, 2, 3
ORDER BY first_failure, 1, 2, 3
LIMIT %(limit)s
