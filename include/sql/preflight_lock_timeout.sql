-- For the rest of this transaction: give up on a lock that is not granted within the timeout.
SELECT set_config('lock_timeout', %(timeout)s, true);
