SELECT pg_terminate_backend(active_pid) FROM pg_replication_slots
 WHERE slot_name = %(slot_name)s AND active_pid IS NOT NULL;
