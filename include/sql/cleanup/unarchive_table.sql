-- Phase 6 revert: give an archived table its old name back and remove the archive comment (for a
-- late rollback that needs the old tables again). Sent as one batch = one transaction; timeouts
-- are set by the DDL executor; the step checks the catalog first, so re-runs are safe.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout, prefer-robust-stmts
-- squawk-ignore-file renaming-table
ALTER TABLE "{schema}"."{archived}" RENAME TO "{table}";
COMMENT ON TABLE "{schema}"."{table}" IS NULL;
