-- The stored value of one setting, in this transaction only; the ALTER ... FROM CURRENT after it keeps it.
SELECT set_config(%(name)s, %(value)s, true);
