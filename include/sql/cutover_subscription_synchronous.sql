-- Before the fence: the apply worker commits synchronously, so it confirms each change as soon as it is
-- applied instead of after the target's WAL writer runs. The worker reads the new setting at its next
-- transaction without restarting.
ALTER SUBSCRIPTION {subscription} SET (synchronous_commit = 'on')
