-- A fact about this cutover (the fence, the drained LSN, the opened target), replaced on every write.
INSERT INTO {schema}.cutover_state AS s (fence_id, kind, object, previous)
VALUES (%(fence_id)s, %(kind)s, %(object)s, %(previous)s::jsonb)
ON CONFLICT (fence_id, kind, object) DO UPDATE
SET previous = excluded.previous, applied_at = now(), restored_at = NULL
