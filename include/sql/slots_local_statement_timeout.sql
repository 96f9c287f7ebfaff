SELECT set_config('statement_timeout', %(timeout_ms)s, true);
