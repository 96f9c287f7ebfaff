-- End every client session on the migrated databases except the cutover's own and those reading a
-- replication slot (CDC itself): whatever its role, a session opened before the fence keeps the rights
-- it started with.
SELECT a.pid, a.usename::text AS role, a.datname::text AS database, a.application_name,
       a.client_addr::text AS client_addr, pg_terminate_backend(a.pid) AS terminated
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend' AND a.datname = ANY(%(databases)s::text[])
  AND a.pid <> pg_backend_pid() AND a.pid <> ALL(%(keep_pids)s::int[])
          AND a.pid NOT IN (SELECT s.active_pid FROM pg_replication_slots AS s WHERE s.active_pid IS NOT NULL)
