-- Rollback scenario 3: row count of one table (side database restore check, verification counts).
SELECT count(*) FROM "{table}";
