-- A committed change after the final LSN, so DMS has a position past it to confirm in the slot.
INSERT INTO {schema}.{table} AS m (id, final_lsn, written_at)
VALUES (1, %(final_lsn)s::pg_lsn, pg_catalog.clock_timestamp())
ON CONFLICT (id) DO UPDATE SET final_lsn = EXCLUDED.final_lsn, written_at = EXCLUDED.written_at
RETURNING pg_catalog.pg_current_wal_lsn()::text
