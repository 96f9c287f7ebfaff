-- Apply errors since the subscription was created (pg_stat_subscription_stats, PostgreSQL 15 and later).
SELECT st.apply_error_count FROM pg_stat_subscription_stats AS st WHERE st.subname = %(name)s
