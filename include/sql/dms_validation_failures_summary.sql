-- Validation failures of one DMS task (TASK_NAME is the task's resource id), counted by table and type.
SELECT "TABLE_OWNER"::text AS table_owner,
       "TABLE_NAME"::text AS table_name,
       "FAILURE_TYPE"::text AS failure_type,
       count(*)::bigint AS failures
FROM {schema}.awsdms_validation_failures_v1
WHERE "TASK_NAME" = %(task_name)s
GROUP BY 1, 2, 3
ORDER BY failures DESC, 1, 2, 3
