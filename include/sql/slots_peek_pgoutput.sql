-- Decode the slot up to the given LSN without consuming it; only the row count travels.
-- pgoutput reads the publication as of each decoded change, so it must already exist.
SELECT count(*)::bigint AS decoded
  FROM pg_logical_slot_peek_binary_changes(%(slot_name)s, %(upto)s::pg_lsn, NULL,
                                           'proto_version', '1',
                                           'publication_names', quote_ident(%(publication)s));
