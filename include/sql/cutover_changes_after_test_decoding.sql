-- Changes the slot still holds past its confirmed position, in the migrated schemas only (the drain
-- marker and DMS's own tables are elsewhere). test_decoding writes 'table <schema>.<table>: <ACTION>: ...'.
WITH peeked AS MATERIALIZED (
    SELECT lsn, xid, substring(data FROM '^table (.*?): (?:INSERT|UPDATE|DELETE|TRUNCATE)') AS tbl
      FROM pg_logical_slot_peek_changes(%(slot_name)s, NULL, NULL)
     WHERE data LIKE 'table %%'
), changes AS (
    SELECT lsn, xid, tbl FROM peeked
     WHERE EXISTS (SELECT 1 FROM unnest(%(schemas)s::text[]) AS s WHERE starts_with(tbl, quote_ident(s) || '.'))
)
SELECT count(*)::bigint AS changes,
       coalesce(jsonb_agg(DISTINCT xid::text), '[]'::jsonb) AS xids,
       coalesce(jsonb_agg(DISTINCT tbl), '[]'::jsonb) AS tables,
       min(lsn)::text AS first_lsn
  FROM changes
