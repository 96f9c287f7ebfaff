ALTER DATABASE {database} SET {setting} FROM CURRENT;
