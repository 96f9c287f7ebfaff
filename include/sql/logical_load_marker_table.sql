CREATE TABLE IF NOT EXISTS {schema}.logical_load (
    migration_id text PRIMARY KEY,
    slot_name text NOT NULL,
    state text NOT NULL CHECK (state IN ('loading', 'loaded')),
    created_database boolean NOT NULL,
    consistent_point pg_lsn,
    started_at timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at timestamptz,
    stats jsonb NOT NULL DEFAULT '{{}}'
);
