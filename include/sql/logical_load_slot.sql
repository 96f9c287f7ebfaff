SELECT slot_name::text, active_pid, confirmed_flush_lsn::text AS confirmed_flush_lsn, database::text AS database
  FROM pg_replication_slots WHERE slot_name = %(slot_name)s;
