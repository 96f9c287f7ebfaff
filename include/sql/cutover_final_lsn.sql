-- The source's final LSN: the end of the last WAL record inserted. Every commit acknowledged before this
-- read is at or below it, including asynchronous commits not flushed yet (a transaction that writes no
-- WAL of its own commits asynchronously, so a commit of ours could not force the flush). CDC applied past
-- it means the subscriber confirmed it, which also waits for it to be flushed.
SELECT pg_current_wal_insert_lsn()::text
