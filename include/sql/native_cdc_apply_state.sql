-- The apply worker of a subscription: is it running, when did it last hear from or report to the source.
SELECT s.subenabled AS enabled,
       w.pid AS worker_pid,
       w.received_lsn::text AS received_lsn,
       w.latest_end_lsn::text AS latest_end_lsn,
       extract(epoch FROM clock_timestamp() - greatest(w.last_msg_receipt_time, w.latest_end_time))::float8 AS apply_age_s
FROM pg_subscription AS s
LEFT JOIN pg_stat_subscription AS w ON w.subid = s.oid AND w.relid IS NULL
WHERE s.subname = %(name)s AND s.subdbid = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
