-- Two connections reach the same server when the postmaster start times match to the microsecond.
SELECT pg_postmaster_start_time() AS started_at;
