-- Every role with what the fence changes: whether it can log in and its own default_transaction_read_only.
SELECT r.rolname::text AS role, r.rolcanlogin AS can_login, r.rolsuper AS superuser,
       (SELECT substr(c, strpos(c, '=') + 1)
        FROM pg_db_role_setting AS s CROSS JOIN LATERAL unnest(s.setconfig) AS c
        WHERE s.setrole = r.oid AND s.setdatabase = 0
          AND split_part(c, '=', 1) = 'default_transaction_read_only') AS read_only,
       r.rolname = current_user OR r.rolname = session_user AS is_me
FROM pg_roles AS r
ORDER BY 1
