-- The source side of a recheck: the chunk's row count and digest, plus a digest of every row's xmin, which
-- any insert, update or delete in the range changes (even one that writes back the values it replaced).
SELECT count(*) AS row_count,
       coalesce(sum(('x' || substr(md5(ROW(_r.*)::text), 1, 16))::bit(64)::bigint), 0)::text AS digest,
       coalesce(sum(('x' || substr(md5(_r.xmin::text || ' ' || ROW(_r.*)::text), 1, 16))::bit(64)::bigint),
                0)::text AS version
FROM {table} AS _r
WHERE {predicate}
