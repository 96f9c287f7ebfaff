-- One privilege on a database (CONNECT, CREATE or TEMPORARY); grant_option is empty or WITH GRANT OPTION.
GRANT {privilege} ON DATABASE {database} TO {grantee}{grant_option}
