-- The slot already exists on the source and the data is already on the target: no slot, no copy,
-- and no apply until the origin is moved to the captured position.
-- The statement is built inside the server from the values loaded by COPY, so neither this text nor
-- its bind parameters hold the connection string: log_statement (ddl or all) logs this block, and the
-- nested CREATE SUBSCRIPTION is not logged. An error is raised again without its context line,
-- which would quote the nested statement, connection string included.
DO $create_subscription$
DECLARE
    args record;
BEGIN
    SELECT * INTO STRICT args FROM pg_temp.migration_subscription_args;
    EXECUTE format(
        'CREATE SUBSCRIPTION %I CONNECTION %L PUBLICATION %I '
        'WITH (create_slot = false, copy_data = false, enabled = false, slot_name = %L)',
        args.subscription, args.conninfo, args.publication, args.slot_name);
EXCEPTION WHEN OTHERS THEN
    RAISE EXCEPTION USING MESSAGE = SQLERRM, ERRCODE = SQLSTATE;
END
$create_subscription$
