-- DDL the migration must replay later (the trigger enabling at cutover), one row per purpose and database.
CREATE TABLE IF NOT EXISTS {schema}.saved_ddl (
    purpose  text        NOT NULL,
    database text        NOT NULL,
    schemas  text[]      NOT NULL,
    ddl      text        NOT NULL,
    saved_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (purpose, database)
);
