-- Client sessions on the migrated databases other than the cutover's own: who could still be writing.
SELECT a.pid, a.usename::text AS role, a.datname::text AS database, a.application_name,
       a.client_addr::text AS client_addr, a.backend_start::text AS backend_start
FROM pg_stat_activity AS a
WHERE a.backend_type = 'client backend' AND a.datname = ANY(%(databases)s::text[])
  AND a.pid <> pg_backend_pid() AND a.pid <> ALL(%(keep_pids)s::int[])
ORDER BY a.pid
