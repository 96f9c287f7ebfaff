-- What still keeps the source from being quiet, in one round trip: client sessions on the migrated
-- databases other than the cutover's own and CDC's slot readers (ended again here, whatever their role), open transactions that
-- have written (anyone's but ours), and prepared transactions.
SELECT (SELECT coalesce(jsonb_agg(jsonb_build_object('pid', a.pid, 'role', a.usename, 'database', a.datname,
                                                     'application_name', a.application_name,
                                                     'terminated', pg_terminate_backend(a.pid))), '[]'::jsonb)
        FROM pg_stat_activity AS a
        WHERE a.backend_type = 'client backend' AND a.datname = ANY(%(databases)s::text[])
          AND a.pid <> pg_backend_pid() AND a.pid <> ALL(%(keep_pids)s::int[])
          AND a.pid NOT IN (SELECT s.active_pid FROM pg_replication_slots AS s WHERE s.active_pid IS NOT NULL)) AS sessions_ended,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('pid', a.pid, 'role', a.usename, 'database', a.datname,
                                                     'xact_start', a.xact_start)), '[]'::jsonb)
        FROM pg_stat_activity AS a
        WHERE a.pid <> pg_backend_pid() AND a.pid <> ALL(%(keep_pids)s::int[])
          AND a.pid NOT IN (SELECT s.active_pid FROM pg_replication_slots AS s WHERE s.active_pid IS NOT NULL) AND a.backend_xid IS NOT NULL
          AND a.backend_type <> 'walsender' AND a.datname = ANY(%(databases)s::text[])) AS open_transactions,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('gid', p.gid, 'owner', p.owner, 'database', p.database)),
                        '[]'::jsonb)
        FROM pg_prepared_xacts AS p WHERE p.database = ANY(%(databases)s::text[])) AS prepared_transactions
