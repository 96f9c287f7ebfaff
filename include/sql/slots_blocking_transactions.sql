-- Transactions older than the slot creation attempt that hold an xid: the slot's consistent point
-- waits for each of them, and prepared transactions count too.
SELECT format('pid %%s', a.pid) AS who,
       a.datname AS database,
       a.usename AS owner,
       a.application_name,
       a.state,
       floor(extract(epoch FROM clock_timestamp() - a.xact_start))::bigint AS age_s
  FROM pg_stat_activity a
 WHERE a.pid <> pg_backend_pid()
   AND a.backend_xid IS NOT NULL
   AND a.xact_start < %(since)s
UNION ALL
SELECT format('prepared transaction %%L', p.gid),
       p.database,
       p.owner::text,
       NULL,
       'prepared',
       floor(extract(epoch FROM clock_timestamp() - p.prepared))::bigint
  FROM pg_prepared_xacts p
 WHERE p.prepared < %(since)s
 ORDER BY age_s DESC;
