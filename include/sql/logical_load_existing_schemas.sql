SELECT nspname::text FROM pg_namespace WHERE nspname = ANY(%(schemas)s) ORDER BY 1;
