-- Lag as the CDC sensor saw it, one row per check, for the report's chart (kept on the target).
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {schema}.cdc_lag_samples (
    database    text NOT NULL,
    sampled_at  timestamptz NOT NULL DEFAULT now(),
    lag_bytes   bigint,
    apply_age_s double precision
);
