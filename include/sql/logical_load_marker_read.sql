SELECT migration_id, slot_name, state, created_database, consistent_point::text AS consistent_point,
       started_at, finished_at, stats
  FROM {schema}.logical_load
 WHERE migration_id = %(migration_id)s;
