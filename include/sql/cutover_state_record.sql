-- The first record of an object wins while the fence is up, so a rerun never takes fenced state for the original.
INSERT INTO {schema}.cutover_state AS s (fence_id, kind, object, previous)
SELECT %(fence_id)s, r.kind, r.object, r.previous
FROM jsonb_to_recordset(%(records)s::jsonb) AS r(kind text, object text, previous jsonb)
ON CONFLICT (fence_id, kind, object) DO UPDATE
SET previous = excluded.previous, applied_at = now(), restored_at = NULL
WHERE s.restored_at IS NOT NULL
