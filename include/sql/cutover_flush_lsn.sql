-- Read after a synchronous commit: every commit before it is flushed, so CDC can be waited on up to here.
SELECT pg_current_wal_flush_lsn()::text
