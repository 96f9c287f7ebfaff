INSERT INTO {schema}.cdc_lag_samples (database, lag_bytes, apply_age_s)
VALUES (%(database)s, %(lag_bytes)s, %(apply_age_s)s)
