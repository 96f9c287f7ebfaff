ALTER ROLE {role} IN DATABASE {database} RESET default_transaction_read_only
