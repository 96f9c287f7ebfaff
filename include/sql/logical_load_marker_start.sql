INSERT INTO {schema}.logical_load (migration_id, slot_name, state, created_database)
VALUES (%(migration_id)s, %(slot_name)s, 'loading', %(created_database)s)
ON CONFLICT (migration_id) DO UPDATE
   SET slot_name = EXCLUDED.slot_name, state = 'loading', created_database = EXCLUDED.created_database,
       consistent_point = NULL, started_at = clock_timestamp(), finished_at = NULL, stats = '{{}}';
