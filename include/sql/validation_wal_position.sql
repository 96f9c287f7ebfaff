-- The end of the WAL inserted so far (every commit an earlier statement saw ends at or before it),
-- with the page and segment sizes needed to read a position that sits just past a page header.
SELECT pg_current_wal_insert_lsn()::text, current_setting('wal_block_size')::int,
       (SELECT setting::bigint FROM pg_settings WHERE name = 'wal_segment_size')
