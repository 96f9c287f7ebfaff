-- The source database's own settings (ALTER DATABASE ... SET) and its roles' settings in it (ALTER ROLE ...
-- IN DATABASE ... SET), one row per setting: role NULL for the database's own; name and value as stored.
SELECT r.rolname::text AS role, split_part(c.setting, '=', 1) AS name,
       substr(c.setting, strpos(c.setting, '=') + 1) AS value
  FROM pg_db_role_setting AS s
  JOIN pg_database AS d ON d.oid = s.setdatabase
  LEFT JOIN pg_roles AS r ON r.oid = s.setrole AND s.setrole <> 0
 CROSS JOIN LATERAL unnest(s.setconfig) AS c(setting)
 WHERE d.datname = current_database()
 ORDER BY r.rolname NULLS FIRST, 2;
