-- Whether this cutover already opened the target: then the source must stay fenced.
SELECT previous FROM {schema}.cutover_state
WHERE fence_id = %(fence_id)s AND kind = 'target' AND object = 'connection' AND restored_at IS NULL
