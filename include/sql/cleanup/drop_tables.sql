-- Phase 6 drop (seed 6.3), only after the safe-drop date, a no-writes check and an approval.
-- All archived tables in one statement, without CASCADE: foreign keys between them are fine,
-- anything else depending on them (a view, a foreign key from a live table) makes it fail with
-- the dependent objects named, instead of silently dropping them too.
-- "{tables}" is the composed list of qualified archived table names.
-- Timeouts are set on this session by the DDL executor (ddl/set_timeouts.sql).
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- squawk-ignore-file ban-drop-table
DROP TABLE IF EXISTS "{tables}";
