-- Where the source has written its WAL to, for servers that do not report the insert position.
SELECT pg_current_wal_lsn()::text
