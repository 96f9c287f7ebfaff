ALTER ROLE {role} IN DATABASE {database} SET {setting} FROM CURRENT;
