GRANT {privilege} ON DATABASE {database} TO {grantee}{grant_option};
