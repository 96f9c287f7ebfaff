-- The search_path for the rest of the drift check's own transaction (rolled back at its end).
SELECT set_config('search_path', %(search_path)s, true)
