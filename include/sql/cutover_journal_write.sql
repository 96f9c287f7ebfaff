-- One journal entry of this run, replaced on every write.
INSERT INTO {schema}.cutover_journal AS j (migration_id, run_id, entry, state, detail)
VALUES (%(migration_id)s, %(run_id)s, %(entry)s, %(state)s, %(detail)s::jsonb)
ON CONFLICT (migration_id, run_id, entry) DO UPDATE
SET state = excluded.state, detail = excluded.detail, at = clock_timestamp()
