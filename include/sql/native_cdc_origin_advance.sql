SELECT pg_replication_origin_advance(%(origin)s, %(lsn)s::pg_lsn)
