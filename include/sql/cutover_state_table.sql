-- What the write fence changed on the source, kept where an undo (or a person) can read it back.
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.cutover_state (
    fence_id    text NOT NULL,
    kind        text NOT NULL,
    object      text NOT NULL,
    previous    jsonb NOT NULL,
    applied_at  timestamptz NOT NULL DEFAULT now(),
    restored_at timestamptz,
    PRIMARY KEY (fence_id, kind, object)
);
