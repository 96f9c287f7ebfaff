-- Slots still held by a walsender (a slot in use cannot be peeked).
SELECT slot_name::text, active_pid FROM pg_replication_slots
WHERE slot_name = ANY(%(slots)s::text[]) AND active
