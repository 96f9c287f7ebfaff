-- One-row table in the control schema (never replicated) that the cutover drain writes to.
CREATE TABLE IF NOT EXISTS {schema}.{table} (
    id integer PRIMARY KEY,
    final_lsn pg_lsn NOT NULL,
    written_at timestamptz NOT NULL
)
