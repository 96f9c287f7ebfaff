"""Pure migration logic: config, LSNs, naming, SQL, PostgreSQL work. No Airflow imports here."""
