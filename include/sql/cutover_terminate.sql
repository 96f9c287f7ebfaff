-- End every session of the fenced roles; the fence keeps them from coming back.
SELECT a.pid, a.usename::text AS role, a.datname::text AS database, pg_terminate_backend(a.pid) AS terminated
FROM pg_stat_activity AS a
WHERE a.usename = ANY(%(roles)s::text[]) AND a.pid <> pg_backend_pid()
