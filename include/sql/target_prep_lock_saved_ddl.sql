-- Serialises concurrent reruns: the first saves the DDL, the others read what it saved.
LOCK TABLE {schema}.saved_ddl IN SHARE ROW EXCLUSIVE MODE;
