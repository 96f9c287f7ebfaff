-- One row of a table by the key DMS recorded in awsdms_validation_failures_v1 (a JSON object of the key
-- columns, compared as text so '7' and 7 match): the row as JSON and its version (xmin).
SELECT row_to_json(t)::text AS row_json,
       t.xmin::text AS version
FROM {table} AS t
WHERE NOT EXISTS (
    SELECT 1
    FROM jsonb_each_text(%(key)s::jsonb) AS k
    WHERE to_jsonb(t) ->> k.key IS DISTINCT FROM k.value
)
LIMIT 2
