-- Every setval in one statement, and none at all when any sequence is missing on the target.
WITH wanted AS (
    SELECT w.schema_name, w.sequence_name, w.value, w.is_called,
           to_regclass(format('%%I.%%I', w.schema_name, w.sequence_name)) AS seq
      FROM unnest(%(schemas)s::text[], %(names)s::text[], %(values)s::bigint[], %(called)s::boolean[])
           AS w(schema_name, sequence_name, value, is_called)
), missing AS (
    SELECT coalesce(array_agg(format('%%I.%%I', schema_name, sequence_name)
                              ORDER BY schema_name, sequence_name), '{}') AS names
      FROM wanted w
     WHERE w.seq IS NULL
        OR NOT EXISTS (SELECT FROM pg_sequence s WHERE s.seqrelid = w.seq)
)
SELECT missing.names AS missing,
       (SELECT count(setval(w.seq, w.value, w.is_called))
          FROM wanted w
         WHERE cardinality(missing.names) = 0)::int AS applied
  FROM missing;
