-- The target's record of validation passes and of chunks whose digests differed.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.validation_runs (
    validation_id text PRIMARY KEY,
    tables        integer,
    chunks        integer,
    rows_compared bigint,
    started_at    timestamptz NOT NULL DEFAULT now(),
    completed_at  timestamptz
);
CREATE TABLE IF NOT EXISTS {schema}.validation_failures (
    validation_id text NOT NULL,
    table_schema  text NOT NULL,
    table_name    text NOT NULL,
    chunk_key     text NOT NULL,
    key_columns   text[] NOT NULL,
    chunk_lo      text[],
    chunk_hi      text[],
    source_rows   bigint,
    target_rows   bigint,
    source_digest text,
    target_digest text,
    first_seen    timestamptz NOT NULL DEFAULT now(),
    last_checked  timestamptz NOT NULL DEFAULT now(),
    rechecks      integer NOT NULL DEFAULT 0,
    state         text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'persistent', 'clean')),
    PRIMARY KEY (validation_id, table_schema, table_name, chunk_key)
);
-- Each validation belongs to one run: what that run compared, so a later run never inherits a clean pass.
ALTER TABLE {schema}.validation_runs
    ADD COLUMN IF NOT EXISTS run_id    text,
    ADD COLUMN IF NOT EXISTS schemas   text[],
    ADD COLUMN IF NOT EXISTS by_schema jsonb;
