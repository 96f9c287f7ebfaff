SELECT slot_type, confirmed_flush_lsn::text AS confirmed_flush_lsn
  FROM pg_replication_slots
 WHERE slot_name = %(slot_name)s;
