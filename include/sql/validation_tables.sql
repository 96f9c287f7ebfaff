-- Tables to compare (partitioned tables as a whole) with their primary key columns and a row estimate.
SELECT n.nspname AS schema, c.relname AS table,
       coalesce((SELECT array_agg(a.attname::text ORDER BY k.ord)
                 FROM pg_index AS i
                 CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY AS k(attnum, ord)
                 JOIN pg_attribute AS a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
                 WHERE i.indrelid = c.oid AND i.indisprimary), ARRAY[]::text[]) AS keys,
       greatest(c.reltuples, 0)::bigint AS estimated_rows
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND NOT c.relispartition AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2
