ALTER ROLE {role} RESET default_transaction_read_only
