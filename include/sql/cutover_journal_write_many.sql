-- Several journal entries of this run in one statement, so in one commit; each replaced as by
-- cutover_journal_write.
INSERT INTO {schema}.cutover_journal AS j (migration_id, run_id, entry, state, detail)
SELECT %(migration_id)s, %(run_id)s, e.entry, e.state, e.detail
FROM jsonb_to_recordset(%(entries)s::jsonb) AS e(entry text, state text, detail jsonb)
ON CONFLICT (migration_id, run_id, entry) DO UPDATE
SET state = excluded.state, detail = excluded.detail, at = clock_timestamp()
