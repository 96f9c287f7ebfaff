-- Every chunk_rows-th primary key in key order, as text: the upper bounds of the chunks.
SELECT {key_text}
FROM (SELECT {keys}, row_number() OVER (ORDER BY {keys}) AS _mig_rn FROM {table}) AS s
WHERE s._mig_rn %% %(chunk_rows)s = 0
ORDER BY s._mig_rn
