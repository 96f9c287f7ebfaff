-- What the source database grants beyond its owner (CONNECT, CREATE, TEMPORARY), one row per grantee and
-- privilege; PUBLIC is the grantee NULL. A database with PostgreSQL's default privileges (no ACL) answers
-- with those (PUBLIC may connect and create temporary tables).
SELECT CASE WHEN a.grantee <> 0 THEN pg_get_userbyid(a.grantee)::text END AS grantee, a.privilege_type,
       a.is_grantable
  FROM pg_database AS d
 CROSS JOIN LATERAL aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a
 WHERE d.datname = current_database() AND a.grantee <> d.datdba
 ORDER BY 1 NULLS FIRST, 2;
