-- Application simulator, after write cutover with keep_old_sync: point the new row at the old row
-- that was just written for it, so reads by the old key and consistency checks find the pair.
UPDATE "{table}"
SET "{legacy_id}" = @legacy_id
WHERE "{new_key}" = @new_key;
