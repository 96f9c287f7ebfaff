ALTER ROLE {role} IN DATABASE {database} SET default_transaction_read_only = {value}
