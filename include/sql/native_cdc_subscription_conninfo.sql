-- The connection string the subscription of this name stores (superusers only may read it).
SELECT s.subconninfo
FROM pg_subscription AS s
WHERE s.subname = %(name)s AND s.subdbid = (SELECT d.oid FROM pg_database AS d WHERE d.datname = current_database())
