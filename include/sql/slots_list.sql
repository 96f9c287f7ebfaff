SELECT slot_name, slot_type, plugin, database, active, active_pid
  FROM pg_replication_slots
 ORDER BY slot_name;
