-- Decoding only reads flushed WAL, so the flush position is where a peek can reach.
SELECT pg_current_wal_flush_lsn()::text AS lsn;
