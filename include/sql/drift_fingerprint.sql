-- A change marker of the migrated schemas' catalog: the rows drift_catalog reads (and the view rules,
-- partition keys and column defaults behind the definitions it prints), each by its catalog, its place
-- and the transaction that wrote it. DDL writes a new version of a catalog row (a new place and xmin),
-- adds rows or deletes them, so any DDL on these objects changes the marker. Rows rewritten in place
-- (VACUUM's and ANALYZE's statistics) keep it. Some statements that leave every definition as it was
-- change it too (TRUNCATE, REINDEX, ENABLE TRIGGER, GRANT): the caller then compares digests.
-- Returns 'rows:sum' (the sum of the rows' 64-bit hashes, exact).
WITH nsp AS MATERIALIZED (
    SELECT n.oid, n.tableoid, n.ctid, n.xmin FROM pg_namespace AS n WHERE n.nspname = ANY(%(schemas)s::text[])
), rel AS MATERIALIZED (
    SELECT c.oid, c.relkind, c.tableoid, c.ctid, c.xmin FROM pg_class AS c WHERE c.relnamespace IN (SELECT oid FROM nsp)
), typ AS MATERIALIZED (
    SELECT t.oid, t.tableoid, t.ctid, t.xmin FROM pg_type AS t WHERE t.typnamespace IN (SELECT oid FROM nsp)
), marks (tableoid, ctid, xmin) AS (
    SELECT tableoid, ctid, xmin FROM nsp
    UNION ALL SELECT tableoid, ctid, xmin FROM rel
    UNION ALL SELECT tableoid, ctid, xmin FROM typ
    UNION ALL SELECT a.tableoid, a.ctid, a.xmin FROM pg_attribute AS a JOIN rel ON rel.oid = a.attrelid
               WHERE a.attnum > 0 AND rel.relkind IN ('r', 'p', 'v', 'm', 'c', 'f')
    UNION ALL SELECT d.tableoid, d.ctid, d.xmin FROM pg_attrdef AS d WHERE d.adrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT co.tableoid, co.ctid, co.xmin FROM pg_constraint AS co WHERE co.connamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT i.tableoid, i.ctid, i.xmin FROM pg_index AS i WHERE i.indexrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT s.tableoid, s.ctid, s.xmin FROM pg_sequence AS s WHERE s.seqrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT e.tableoid, e.ctid, e.xmin FROM pg_enum AS e WHERE e.enumtypid IN (SELECT oid FROM typ)
    UNION ALL SELECT r.tableoid, r.ctid, r.xmin FROM pg_range AS r WHERE r.rngtypid IN (SELECT oid FROM typ)
    UNION ALL SELECT tg.tableoid, tg.ctid, tg.xmin FROM pg_trigger AS tg WHERE tg.tgrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT p.tableoid, p.ctid, p.xmin FROM pg_proc AS p WHERE p.pronamespace IN (SELECT oid FROM nsp)
    UNION ALL SELECT h.tableoid, h.ctid, h.xmin FROM pg_inherits AS h WHERE h.inhrelid IN (SELECT oid FROM rel)
    UNION ALL SELECT w.tableoid, w.ctid, w.xmin FROM pg_rewrite AS w WHERE w.ev_class IN (SELECT oid FROM rel)
    UNION ALL SELECT k.tableoid, k.ctid, k.xmin FROM pg_partitioned_table AS k
               WHERE k.partrelid IN (SELECT oid FROM rel)
)
SELECT count(*) || ':' || coalesce(sum(hashtextextended(m.tableoid::text || m.ctid::text || m.xmin::text, 0)::numeric),
                                   0)
  FROM marks AS m
