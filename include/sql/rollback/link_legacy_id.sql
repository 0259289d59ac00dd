-- Rollback scenario 3: give a row created in the new table after the cutover (no old key yet) the
-- old key reserved for it, before its old row is written: a crash in between leaves a linked row
-- whose old row is missing, which the next run inserts - never a second old row.
UPDATE "{table}"
SET "{legacy_id}" = @legacy_id
WHERE "{new_key}" = @new_key
  AND "{legacy_id}" IS NULL
RETURNING "{new_key}";
