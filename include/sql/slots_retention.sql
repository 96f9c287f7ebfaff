-- What a kept slot holds on the source: WAL it retains, whether the server still keeps all of it, and the
-- limit that would invalidate it (-1: none, the slot grows until it is dropped).
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), restart_lsn)::bigint AS retained_bytes, wal_status::text,
       safe_wal_size::bigint, current_setting('max_slot_wal_keep_size') AS max_slot_wal_keep_size
  FROM pg_replication_slots
 WHERE slot_name = %(slot_name)s;
