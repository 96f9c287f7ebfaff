-- Every row of one key range: its key (as text), the same 64-bit md5 slice the chunk digest sums, and its xmin.
SELECT {key_text}, substr(md5(ROW(_r.*)::text), 1, 16) AS hash, _r.xmin::text AS version
FROM {table} AS _r
WHERE {predicate}
