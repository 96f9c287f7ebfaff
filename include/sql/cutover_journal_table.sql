-- The cutover journal: every step of one run's cutover, before and after it runs, and what the write
-- fence changed. It lives on the target, which stays reachable however the source is fenced.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.cutover_journal (
    migration_id text NOT NULL,
    run_id       text NOT NULL,
    entry        text NOT NULL,
    state        text NOT NULL,
    detail       jsonb NOT NULL DEFAULT '{{}}'::jsonb,
    at           timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (migration_id, run_id, entry)
)
