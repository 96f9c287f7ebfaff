GRANT CONNECT ON DATABASE {database} TO {grantee}
