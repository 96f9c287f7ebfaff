-- Every role with what the fence needs: whether it can log in, the roles it is a direct member of, and
-- its own default_transaction_read_only in each migrated database (null: not set there).
SELECT r.rolname::text AS role, r.rolcanlogin AS can_login, r.rolsuper AS superuser,
       r.rolname = current_user OR r.rolname = session_user AS is_me,
       coalesce((SELECT array_agg(g.rolname::text ORDER BY g.rolname)
                 FROM pg_auth_members AS m JOIN pg_roles AS g ON g.oid = m.roleid
                 WHERE m.member = r.oid), '{}'::text[]) AS member_of,
       coalesce((SELECT jsonb_object_agg(d.datname, (
                     SELECT substr(c, strpos(c, '=') + 1)
                     FROM pg_db_role_setting AS s CROSS JOIN LATERAL unnest(s.setconfig) AS c
                     WHERE s.setrole = r.oid AND s.setdatabase = d.oid
                       AND split_part(c, '=', 1) = 'default_transaction_read_only'))
                 FROM pg_database AS d WHERE d.datname = ANY(%(databases)s::text[])), '{}'::jsonb) AS read_only_in
FROM pg_roles AS r
ORDER BY 1
