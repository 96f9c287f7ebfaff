ALTER ROLE {role} SET default_transaction_read_only = {value}
