-- Requested schemas that do not exist in the current database.
SELECT s AS schema FROM unnest(%(schemas)s::text[]) AS s
WHERE NOT EXISTS (SELECT 1 FROM pg_namespace AS n WHERE n.nspname = s)
