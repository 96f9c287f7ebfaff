-- Plain tables (partitions included) of the given schemas: what a per-table publication must list.
SELECT n.nspname AS schema, c.relname AS table
FROM pg_class AS c
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE c.relkind = 'r' AND n.nspname = ANY(%(schemas)s)
ORDER BY 1, 2
