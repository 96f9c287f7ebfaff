-- Who answers on this connection. The postmaster start time (to the microsecond) tells servers apart:
-- a physical clone shares the source's system identifier, but never its running postmaster.
SELECT pg_postmaster_start_time() AS started_at,
       host(inet_server_addr()) AS address,
       inet_server_port() AS port,
       current_database() AS database;
