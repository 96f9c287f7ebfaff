-- The apply workers of many subscriptions on one server at once, per (database, subscription), as
-- native_cdc_apply_state and native_cdc_apply_errors read one: pg_subscription is shared by the server's
-- databases and pg_stat_subscription(_stats) list all of them (PostgreSQL 15 and later).
SELECT d.datname AS database, s.subname AS subscription, s.subenabled AS enabled, w.pid AS worker_pid,
       extract(epoch FROM clock_timestamp() - greatest(w.last_msg_receipt_time, w.latest_end_time))::float8
           AS apply_age_s,
       st.apply_error_count
FROM pg_subscription AS s
JOIN pg_database AS d ON d.oid = s.subdbid
LEFT JOIN pg_stat_subscription AS w ON w.subid = s.oid AND w.relid IS NULL
LEFT JOIN pg_stat_subscription_stats AS st ON st.subid = s.oid
WHERE (d.datname, s.subname) IN (SELECT * FROM unnest(%(databases)s::text[], %(subscriptions)s::text[]))
