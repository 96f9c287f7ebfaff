-- Set the session's search_path (pg_catalog for the drift check, then back as it was).
SELECT set_config('search_path', %(search_path)s, false)
