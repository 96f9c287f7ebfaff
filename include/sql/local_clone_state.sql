-- Has the clone finished recovery (a restored copy answers in recovery until it has)?
SELECT pg_is_in_recovery() AS in_recovery, current_setting('server_version') AS server_version
