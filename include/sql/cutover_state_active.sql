-- What this fence changed and has not restored yet.
SELECT kind, object, previous FROM {schema}.cutover_state
WHERE fence_id = %(fence_id)s AND restored_at IS NULL
ORDER BY kind, object
FOR UPDATE
