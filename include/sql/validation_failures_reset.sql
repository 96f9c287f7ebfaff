-- A new full pass of one run's validation records every difference afresh.
DELETE FROM {schema}.validation_failures WHERE validation_id = %(validation_id)s
