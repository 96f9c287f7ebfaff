-- A table without a primary key, row by row: each distinct row's md5 slice, how often it occurs, and those rows' xmins.
SELECT substr(md5(ROW(_r.*)::text), 1, 16) AS hash, count(*)::text AS copies,
       string_agg(_r.xmin::text, ' ' ORDER BY _r.xmin::text) AS version
FROM {table} AS _r
WHERE {predicate}
GROUP BY 1
