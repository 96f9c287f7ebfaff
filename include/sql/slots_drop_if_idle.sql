-- Drop a slot only while nothing reads from it; no row back means it is absent or in use.
SELECT pg_catalog.pg_drop_replication_slot(slot_name)
FROM pg_catalog.pg_replication_slots
WHERE slot_name = %(slot_name)s
  AND NOT active
