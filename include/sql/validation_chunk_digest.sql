-- Row count and an order-independent digest of one key range: the exact sum of every row's 64-bit
-- hashtextextended of its text (a differing chunk sums alike with a chance of about 2^-64).
SELECT count(*) AS row_count,
       coalesce(sum(hashtextextended(ROW(_r.*)::text, 0)), 0)::text AS digest
FROM {table} AS _r
WHERE {predicate}
