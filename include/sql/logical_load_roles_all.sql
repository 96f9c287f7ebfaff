SELECT rolname::text FROM pg_roles ORDER BY 1;
