UPDATE {schema}.logical_load
   SET state = 'loaded', consistent_point = %(consistent_point)s::pg_lsn, finished_at = clock_timestamp(),
       stats = %(stats)s::jsonb
 WHERE migration_id = %(migration_id)s;
