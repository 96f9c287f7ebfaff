SELECT database, sampled_at, lag_bytes, apply_age_s
FROM {schema}.cdc_lag_samples
WHERE database = %(database)s
ORDER BY sampled_at
