-- The source side of a recheck: the chunk's row count and digest, plus a digest of every row's xmin, which
-- any insert, update or delete in the range changes (even one that writes back the values it replaced).
-- Each row's text is made once (OFFSET 0 keeps the subquery from being folded into two conversions).
SELECT count(*) AS row_count,
       coalesce(sum(hashtextextended(_t.row_text, 0)), 0)::text AS digest,
       coalesce(sum(hashtextextended(_t.row_text, _t.xmin::text::bigint)), 0)::text AS version
FROM (SELECT ROW(_r.*)::text AS row_text, _r.xmin FROM {table} AS _r WHERE {predicate} OFFSET 0) AS _t
