-- The highest primary key in a key range, as text (None when the range is empty).
SELECT {key_text} FROM {table} AS _r WHERE {predicate} ORDER BY {keys_desc} LIMIT 1
