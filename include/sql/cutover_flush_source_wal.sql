-- Flush the source's WAL up to here: a transactional logical message gives this statement a transaction id
-- and a WAL record, so its commit, synchronous for this transaction, flushes every WAL record before it,
-- the final LSN included. Until the WAL is flushed the slot cannot send it, so the subscriber could confirm
-- the final LSN only after the source's WAL writer ran (wal_writer_delay, 200 ms by default) where
-- applications commit asynchronously. Subscriptions do not ask for messages and the transaction carries no
-- change to a published table, so nothing is applied.
SELECT pg_catalog.set_config('synchronous_commit', 'on', true),
       pg_catalog.pg_logical_emit_message(true, 'pg-account-migration', 'cutover: flush the final LSN')::text
