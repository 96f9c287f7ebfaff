SELECT purpose, schemas, ddl
  FROM {schema}.saved_ddl
 WHERE database = current_database()
   AND purpose = ANY(%(purposes)s::text[]);
