-- The source database's encoding, locale and owner, which a database the load creates takes over.
SELECT pg_encoding_to_char(d.encoding) AS encoding, d.datcollate::text AS collate, d.datctype::text AS ctype,
       pg_get_userbyid(d.datdba)::text AS owner
  FROM pg_database d
 WHERE d.datname = current_database();
