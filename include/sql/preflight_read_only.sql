-- Preflight only reads: its transaction is read-only, so no check can change the source.
SET TRANSACTION READ ONLY;
