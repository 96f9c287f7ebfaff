-- What the fence is about to change, with its previous state. While a record is not restored the first
-- one wins, so a retry never takes the fenced state for the original.
INSERT INTO {schema}.cutover_journal AS j (migration_id, run_id, entry, state, detail)
SELECT %(migration_id)s, %(run_id)s, r.entry, 'fenced', r.detail
FROM jsonb_to_recordset(%(records)s::jsonb) AS r(entry text, detail jsonb)
ON CONFLICT (migration_id, run_id, entry) DO UPDATE
SET state = 'fenced', detail = excluded.detail, at = clock_timestamp()
WHERE j.state = 'restored'
