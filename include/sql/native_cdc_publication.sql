-- The publication of this name in the current database, if any.
SELECT p.oid, p.puballtables FROM pg_publication AS p WHERE p.pubname = %(name)s
