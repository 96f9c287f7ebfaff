SELECT gid, database, owner::text AS owner,
       floor(extract(epoch FROM clock_timestamp() - prepared))::bigint AS age_s
  FROM pg_prepared_xacts
 ORDER BY prepared;
