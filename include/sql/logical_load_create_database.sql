CREATE DATABASE {database} WITH TEMPLATE template0 ENCODING {encoding} LC_COLLATE {collate} LC_CTYPE {ctype};
