-- What still keeps the source from being quiet, in one round trip: sessions that must end (ended again
-- here: the fenced roles', or with end_all every client session in the migrated databases but the
-- allowed roles' and ours), open transactions that have written, and prepared transactions.
SELECT (SELECT count(pg_terminate_backend(a.pid)) FROM pg_stat_activity AS a
        WHERE a.pid <> pg_backend_pid() AND a.backend_type = 'client backend'
          AND CASE WHEN %(end_all)s
                   THEN a.datname = ANY(%(databases)s::text[]) AND a.usename <> ALL(%(allowed)s::text[])
                        AND a.usename <> current_user
                   ELSE a.usename = ANY(%(end_sessions_of)s::text[]) END) AS sessions_ended,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('pid', a.pid, 'role', a.usename, 'database', a.datname,
                                                     'xact_start', a.xact_start)), '[]'::jsonb)
        FROM pg_stat_activity AS a
        WHERE a.pid <> pg_backend_pid() AND a.backend_xid IS NOT NULL
          AND a.datname = ANY(%(databases)s::text[]) AND a.usename <> ALL(%(allowed)s::text[])) AS open_transactions,
       (SELECT coalesce(jsonb_agg(jsonb_build_object('gid', p.gid, 'owner', p.owner, 'database', p.database)),
                        '[]'::jsonb)
        FROM pg_prepared_xacts AS p WHERE p.database = ANY(%(databases)s::text[])) AS prepared_transactions
