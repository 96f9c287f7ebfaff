SELECT s.name
  FROM unnest(%(schemas)s::text[]) AS s(name)
 WHERE NOT EXISTS (SELECT FROM pg_namespace n WHERE n.nspname = s.name)
 ORDER BY s.name;
