-- Schemas a publication covers as a whole (FOR TABLES IN SCHEMA, PostgreSQL 15 and later).
SELECT n.nspname AS schema
FROM pg_publication_namespace AS pn
JOIN pg_publication AS p ON p.oid = pn.pnpubid
JOIN pg_namespace AS n ON n.oid = pn.pnnspid
WHERE p.pubname = %(name)s
