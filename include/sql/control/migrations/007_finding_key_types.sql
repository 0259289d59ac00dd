-- Migration 007: each consistency finding records the type of its key (issue 12: the diff,
-- references and repair work on integer, uuid and text keys). entity_key stays text (the exact
-- text form of any key type); key_type is the key column's type as the catalog names it (int8,
-- uuid, text, varchar), so the repair parses a stored key back exactly and refuses when the
-- column's type changed since the run. NULL: recorded before 007 (integer keys only then) or a
-- finding whose key is not a table key (an error, an unlinked new row).
-- Adding a nullable column without a default is a catalog-only change: no rewrite, no scan; every
-- existing row is kept as it is. Runs through the DDL executor (ddl.lock_timeout /
-- ddl.statement_timeout set first, lock timeouts retried); idempotent.
-- Never edit once shipped: add a new numbered file instead.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout

ALTER TABLE "{schema}".consistency_findings ADD COLUMN IF NOT EXISTS key_type text;
