-- The drain marker's commit must reach disk so that the flush position covers every earlier commit.
SELECT set_config('synchronous_commit', 'on', false)
