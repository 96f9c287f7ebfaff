-- What the source database grants beyond its owner (CONNECT, CREATE, TEMPORARY), one row per grantee and
-- privilege; PUBLIC is the grantee NULL. acl_default: the database has PostgreSQL's default privileges
-- (PUBLIC may connect and create temporary tables), and no rows come back.
SELECT d.datacl IS NULL AS acl_default, CASE WHEN a.grantee <> 0 THEN pg_get_userbyid(a.grantee)::text END AS grantee,
       a.privilege_type, a.is_grantable
  FROM pg_database AS d
  LEFT JOIN LATERAL aclexplode(d.datacl) AS a ON a.grantee <> d.datdba
 WHERE d.datname = current_database()
 ORDER BY a.grantee, a.privilege_type;
