-- Without a slot name DROP SUBSCRIPTION leaves the source's slot alone.
ALTER SUBSCRIPTION {subscription} SET (slot_name = NONE)
