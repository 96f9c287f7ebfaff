-- Changes the slot still holds past its confirmed position: committed on the source and never applied.
-- pgoutput (protocol 1) message types: I(73) U(85) D(68) carry the relation's oid in bytes 1-4; T(84).
WITH peeked AS MATERIALIZED (
    SELECT lsn, xid, get_byte(data, 0) AS kind, data
      FROM pg_logical_slot_peek_binary_changes(%(slot_name)s, NULL, NULL,
                                               'proto_version', '1',
                                               'publication_names', quote_ident(%(publication)s))
), changes AS (
    SELECT lsn, xid, kind,
           CASE WHEN kind IN (73, 85, 68)
                THEN ((get_byte(data, 1)::bigint << 24) | (get_byte(data, 2) << 16)
                      | (get_byte(data, 3) << 8) | get_byte(data, 4))::oid END AS relid
      FROM peeked WHERE kind IN (73, 85, 68, 84)
)
SELECT count(*)::bigint AS changes,
       coalesce(jsonb_agg(DISTINCT xid::text), '[]'::jsonb) AS xids,
       coalesce(jsonb_agg(DISTINCT coalesce(relid::regclass::text, '(truncate)')), '[]'::jsonb) AS tables,
       min(lsn)::text AS first_lsn
  FROM changes
