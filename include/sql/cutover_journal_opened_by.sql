-- Runs of this migration that opened the target for any of these databases.
SELECT run_id, detail FROM {schema}.cutover_journal
WHERE migration_id = %(migration_id)s AND entry = 'target_open' AND state = 'done'
  AND detail -> 'databases' ?| %(databases)s::text[]
ORDER BY at
