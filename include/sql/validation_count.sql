-- Exact row count of a table the planner has no estimate for (used only for progress).
SELECT count(*) FROM {table}
