INSERT INTO {schema}.saved_ddl (purpose, database, schemas, ddl)
VALUES (%(purpose)s, current_database(), %(schemas)s::text[], %(ddl)s);
