-- How far the subscriber's confirmed position trails the source's WAL, per slot.
SELECT s.slot_name, s.active, s.confirmed_flush_lsn::text AS confirmed_flush_lsn,
       pg_current_wal_lsn()::text AS current_lsn,
       pg_wal_lsn_diff(pg_current_wal_lsn(), s.confirmed_flush_lsn)::bigint AS lag_bytes
FROM pg_replication_slots AS s
WHERE s.slot_name = ANY(%(slots)s)
