-- The session's search_path, to be put back after the drift check.
SELECT current_setting('search_path')
