-- Decode the slot up to the given LSN without consuming it; only the row count travels.
SELECT count(*)::bigint AS decoded
  FROM pg_logical_slot_peek_changes(%(slot_name)s, %(upto)s::pg_lsn, NULL);
