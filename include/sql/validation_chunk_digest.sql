-- Row count and an order-independent digest (sum of 64-bit slices of each row's md5) of one key range.
SELECT count(*) AS row_count,
       coalesce(sum(('x' || substr(md5(ROW(_r.*)::text), 1, 16))::bit(64)::bigint), 0)::text AS digest
FROM {table} AS _r
WHERE {predicate}
