-- Tables a publication lists one by one (FOR TABLE), by schema and name.
SELECT n.nspname AS schema, c.relname AS table
FROM pg_publication_rel AS pr
JOIN pg_publication AS p ON p.oid = pr.prpubid
JOIN pg_class AS c ON c.oid = pr.prrelid
JOIN pg_namespace AS n ON n.oid = c.relnamespace
WHERE p.pubname = %(name)s
