-- After an aborted cutover: the apply worker commits asynchronously again, as it did during the CDC phase
-- (the subscription is created with the default, off), so CDC keeps its throughput until the next attempt.
ALTER SUBSCRIPTION {subscription} SET (synchronous_commit = 'off')
