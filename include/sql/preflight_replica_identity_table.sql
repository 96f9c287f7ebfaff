-- Each table's replica identity before the migration set REPLICA IDENTITY FULL on it (in the source's
-- control schema, per database), so cleanup can put it back and a rerun never loses it.
CREATE TABLE IF NOT EXISTS {schema}.replica_identity_changes (
    schema_name text NOT NULL,
    table_name  text NOT NULL,
    previous    text NOT NULL,      -- pg_class.relreplident: d (default), n (nothing) or i (index)
    changed_at  timestamptz NOT NULL DEFAULT clock_timestamp(),
    restored_at timestamptz,
    PRIMARY KEY (schema_name, table_name)
);
