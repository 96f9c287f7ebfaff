-- Facts about the server and the connected role that preflight judges in Python.
SELECT current_setting('server_version_num')::int AS version_num,
       current_setting('server_version') AS version,
       current_user AS role_name,
       r.rolsuper AS is_superuser,
       r.rolreplication AS has_replication,
       coalesce((SELECT bool_or(pg_has_role(g.oid, 'MEMBER'))
                   FROM pg_roles g
                  WHERE g.rolname IN ('rds_superuser', 'rds_replication')), false) AS is_rds_privileged,
       r.rolsuper OR pg_has_role('pg_read_all_stats', 'MEMBER') AS sees_all_sessions,
       current_setting('max_replication_slots')::int AS max_replication_slots,
       (SELECT count(*) FROM pg_replication_slots)::int AS used_replication_slots,
       coalesce((SELECT count(*) FROM pg_replication_slots WHERE slot_name = ANY(%(slot_names)s::text[])), 0)::int
           AS own_existing_slots,
       current_setting('max_wal_senders')::int AS max_wal_senders,
       (SELECT count(*) FROM pg_stat_activity WHERE backend_type = 'walsender')::int AS used_wal_senders,
       (SELECT count(*) FROM pg_largeobject_metadata)::bigint AS large_objects
  FROM pg_roles r
 WHERE r.rolname = current_user;
