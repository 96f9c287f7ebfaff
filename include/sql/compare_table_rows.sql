-- One digest per row, keyed by the row's primary key text (or the whole row for tables without one).
SELECT {key_expr} AS k, md5(t::text) AS h FROM {schema}.{table} AS t
