-- A per-table publication with nothing to list yet; tables are added on a later run.
CREATE PUBLICATION {publication}
