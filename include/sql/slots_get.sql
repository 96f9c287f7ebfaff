SELECT slot_name, plugin, slot_type, database, temporary, active, active_pid,
       confirmed_flush_lsn::text AS confirmed_flush_lsn,
       restart_lsn::text AS restart_lsn,
       current_database() AS current_database
  FROM pg_replication_slots
 WHERE slot_name = %(slot_name)s;
