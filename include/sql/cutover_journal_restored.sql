-- The fence records of one run, all put back.
UPDATE {schema}.cutover_journal SET state = 'restored', at = clock_timestamp()
WHERE migration_id = %(migration_id)s AND run_id = %(run_id)s AND entry LIKE 'fence:%%' AND state = 'fenced'
