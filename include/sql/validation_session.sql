-- Row text must print the same on both servers: pin every setting that changes how values print.
SELECT set_config('TimeZone', 'UTC', false), set_config('DateStyle', 'ISO, YMD', false),
       set_config('IntervalStyle', 'postgres', false), set_config('extra_float_digits', '1', false),
       set_config('bytea_output', 'hex', false), set_config('lc_monetary', 'C', false),
       set_config('search_path', 'pg_catalog', false)
