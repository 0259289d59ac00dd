-- Backfill, new side: this session's staging table for one batch. Typed like the target's columns
-- (a looked-up column like the lookup table's match column, since it holds the old value), so the
-- COPY text from the legacy side parses into the right types. Emptied at every commit.
-- "{stage_columns}" / "{from_list}" are composed from the column mapping; WITH NO DATA reads nothing.
-- A session-private temp table locks nothing shared; the session's lock_timeout and
-- statement_timeout are set by the engine before this runs.
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
CREATE TEMP TABLE IF NOT EXISTS "{stage}" ON COMMIT DELETE ROWS AS
SELECT "{stage_columns}"
FROM "{from_list}"
WITH NO DATA;
