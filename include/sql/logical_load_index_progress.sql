SELECT format('%%I.%%I', n.nspname, c.relname) AS table_name, coalesce(i.relname::text, '') AS index_name, p.phase,
       p.blocks_done, p.blocks_total
  FROM pg_stat_progress_create_index p
  JOIN pg_class c ON c.oid = p.relid
  JOIN pg_namespace n ON n.oid = c.relnamespace
  LEFT JOIN pg_class i ON i.oid = p.index_relid
 WHERE p.datname = %(database)s;
