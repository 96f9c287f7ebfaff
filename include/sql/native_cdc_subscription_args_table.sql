-- The values CREATE SUBSCRIPTION needs, loaded by COPY: COPY's data is never written to the server log
-- (log_statement logs the COPY command only), so the connection string does not appear there.
CREATE TEMPORARY TABLE migration_subscription_args (
    subscription text NOT NULL,
    publication text NOT NULL,
    slot_name text NOT NULL,
    conninfo text NOT NULL
) ON COMMIT DROP
