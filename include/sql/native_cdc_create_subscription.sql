-- The slot already exists on the source and the data is already on the target: no slot, no copy,
-- and no apply until the origin is moved to the captured position.
CREATE SUBSCRIPTION {subscription} CONNECTION {conninfo} PUBLICATION {publication}
WITH (create_slot = false, copy_data = false, enabled = false, slot_name = {slot_name})
