UPDATE {schema}.cutover_state SET restored_at = now()
WHERE fence_id = %(fence_id)s AND restored_at IS NULL
