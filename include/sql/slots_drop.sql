SELECT pg_drop_replication_slot(%(slot_name)s);
