-- Backfill, new side: the staged batch into the target in one statement, idempotent on the unique
-- legacy id. Against a row that a dual-write (or an earlier pass) already wrote, the version
-- column decides: the backfill only overwrites a strictly older row, so a concurrent dual-write of
-- a newer version always wins and a re-run changes nothing. The row count is what was written.
-- "{source}" is the stage table plus one LEFT JOIN per looked-up column (provider from tenant);
-- "{values}" the matching expressions; "{excluded}" is excluded.<column> for each column.
INSERT INTO "{new_schema}"."{new_table}" AS t ("{legacy_id}", "{columns}")
SELECT s."{legacy_id}", "{values}"
FROM "{source}"
ORDER BY s."{legacy_id}"
ON CONFLICT ("{legacy_id}") DO UPDATE
SET ("{columns}") = ROW("{excluded}")
WHERE t."{version}" IS NULL OR t."{version}" < excluded."{version}";

