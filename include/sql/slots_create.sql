SELECT slot_name::text AS slot_name, lsn::text AS lsn
  FROM pg_create_logical_replication_slot(%(slot_name)s, %(plugin)s);
