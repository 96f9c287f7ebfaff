-- Every row of one key range: its key (as text), the same 64-bit hash the chunk digest sums, and its xmin.
SELECT {key_text}, hashtextextended(ROW(_r.*)::text, 0)::text AS hash, _r.xmin::text AS version
FROM {table} AS _r
WHERE {predicate}
