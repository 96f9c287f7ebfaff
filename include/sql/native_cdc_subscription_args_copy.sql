COPY pg_temp.migration_subscription_args (subscription, publication, slot_name, conninfo) FROM STDIN
