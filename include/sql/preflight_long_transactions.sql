-- Client transactions open longer than the limit, in every database (slot creation waits on all of them).
SELECT a.pid,
       a.datname,
       a.usename,
       a.application_name,
       a.state,
       a.backend_xid IS NOT NULL AS has_xid,
       floor(extract(epoch FROM clock_timestamp() - a.xact_start))::bigint AS age_s
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid()
   AND a.backend_type = 'client backend'
   AND a.xact_start IS NOT NULL
   AND a.xact_start < clock_timestamp() - make_interval(secs => %(max_age_s)s)
 ORDER BY a.xact_start;
