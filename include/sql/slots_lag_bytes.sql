SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), coalesce(confirmed_flush_lsn, restart_lsn))::bigint AS lag_bytes
  FROM pg_replication_slots
 WHERE slot_name = %(slot_name)s;
