-- A disabled subscription's apply worker notices only at its next wake-up; end it now. The launcher
-- does not start it again while the subscription is disabled, and its origin keeps what it applied.
SELECT pg_terminate_backend(w.pid) FROM pg_stat_subscription AS w
JOIN pg_subscription AS s ON s.oid = w.subid
WHERE s.subname = %(name)s AND w.pid IS NOT NULL
