-- One pass of decoding up to the given LSN, summarised on the server so only one row travels.
-- pgoutput messages start with a type byte; 'C' (67) is COMMIT. The publication must already exist.
WITH peeked AS MATERIALIZED (
    SELECT lsn, xid, get_byte(data, 0) = 67 AS is_commit
      FROM pg_logical_slot_peek_binary_changes(%(slot_name)s, %(upto)s::pg_lsn, NULL,
                                               'proto_version', '1',
                                               'publication_names', quote_ident(%(publication)s))
), first_after AS (
    SELECT lsn, xid, is_commit
      FROM peeked
     WHERE lsn > %(captured)s::pg_lsn
     ORDER BY lsn, is_commit DESC
     LIMIT 1
)
SELECT (SELECT count(*) FROM peeked)::bigint AS decoded,
       coalesce((SELECT bool_or(lsn = %(captured)s::pg_lsn) FROM peeked), false) AS exact,
       (SELECT lsn::text FROM first_after) AS next_lsn,
       (SELECT xid::text FROM first_after) AS next_xid,
       (SELECT is_commit FROM first_after) AS next_is_commit,
       coalesce((SELECT bool_or(is_commit AND xid::text = %(watch_xid)s::text) FROM peeked), false) AS watch_committed;
