-- Every session of the critical section: commits reach disk (the journal is durable before each step),
-- no statement waits on a lock or runs past its bound, and the fence's read-only default is not ours.
SELECT set_config('synchronous_commit', 'on', false),
       set_config('lock_timeout', %(lock_timeout)s, false),
       set_config('statement_timeout', %(statement_timeout)s, false),
       set_config('default_transaction_read_only', 'off', false),
       set_config('application_name', %(application_name)s, false)
