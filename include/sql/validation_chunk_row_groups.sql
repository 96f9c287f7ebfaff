-- A table without a primary key, row by row: each distinct row's 64-bit hash, how often it occurs, and
-- those rows' xmins.
SELECT hashtextextended(ROW(_r.*)::text, 0)::text AS hash, count(*)::text AS copies,
       string_agg(_r.xmin::text, ' ' ORDER BY _r.xmin::text) AS version
FROM {table} AS _r
WHERE {predicate}
GROUP BY 1
