-- The subscription of this name in the current database, with its replication origin's name and progress.
SELECT s.oid, s.subenabled AS enabled, s.subslotname AS slot_name, s.subpublications AS publications,
       'pg_' || s.oid AS origin,
       pg_replication_origin_progress('pg_' || s.oid, false)::text AS origin_lsn,
       (SELECT w.pid FROM pg_stat_subscription AS w WHERE w.subid = s.oid AND w.relid IS NULL) AS worker_pid
FROM pg_subscription AS s
WHERE s.subname = %(name)s AND s.subdbid = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
