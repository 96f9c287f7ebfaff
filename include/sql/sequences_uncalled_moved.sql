-- Inside the write-blocked window, of the sequences not called when they were set on the target ahead of
-- the fence (given as oids and the values they would hand out next): the ones still not called whose stored
-- value moved since (setval(..., false)), with that value. One called since is sequences_moved's part.
-- query_to_xml runs the read of each stored value (pg_sequence_last_value shows NULL until called); the
-- number is cut out of its one-row document as text, which costs less than parsing it as XML.
WITH still AS MATERIALIZED (
    SELECT p.seq, p.uncalled_value
      FROM unnest(%(oids)s::oid[], %(uncalled_values)s::bigint[]) AS p(seq, uncalled_value)
     WHERE pg_sequence_last_value(p.seq) IS NULL
), stored AS MATERIALIZED (
    SELECT s.seq, s.uncalled_value,
           split_part(split_part(query_to_xml(format('SELECT last_value FROM %%s', s.seq::regclass), false, true,
                                              '')::text, '<last_value>', 2), '</last_value>', 1)::bigint AS now_value
      FROM still AS s
)
SELECT seq AS oid, now_value AS uncalled_value
  FROM stored
 WHERE now_value IS DISTINCT FROM uncalled_value;
