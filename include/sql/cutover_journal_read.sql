-- Every entry of one run, oldest first.
SELECT entry, state, detail, at FROM {schema}.cutover_journal
WHERE migration_id = %(migration_id)s AND run_id = %(run_id)s
ORDER BY at, entry
