-- Per database: its ACL as stored, every CONNECT grant, and which of the kept roles can connect now.
SELECT d.datname::text AS database, d.datacl::text AS datacl, pg_get_userbyid(d.datdba)::text AS owner,
       coalesce((SELECT jsonb_agg(jsonb_build_object(
                     'grantee', CASE WHEN a.grantee = 0 THEN 'PUBLIC' ELSE pg_get_userbyid(a.grantee)::text END,
                     'public', a.grantee = 0,
                     'grantor', pg_get_userbyid(a.grantor)::text,
                     'grantable', a.is_grantable) ORDER BY a.grantee, a.grantor)
                 FROM aclexplode(coalesce(d.datacl, acldefault('d', d.datdba))) AS a
                 WHERE a.privilege_type = 'CONNECT'), '[]'::jsonb) AS connect_grants,
       coalesce((SELECT jsonb_agg(k.rolname::text ORDER BY k.rolname) FROM pg_roles AS k
                 WHERE k.rolname = ANY(%(keep)s::text[]) AND has_database_privilege(k.oid, d.oid, 'CONNECT')),
                '[]'::jsonb) AS keep_can_connect
FROM pg_database AS d
WHERE d.datname = ANY(%(databases)s::text[])
ORDER BY 1
