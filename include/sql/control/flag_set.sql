-- Change one flag and return its previous value (row locked, so concurrent changes serialise).
WITH previous AS (
    SELECT name, value FROM "{schema}".feature_flags WHERE name = @name FOR UPDATE
)
UPDATE "{schema}".feature_flags AS f
SET value = @value::jsonb, updated_at = now(), updated_by = @actor
FROM previous
WHERE f.name = previous.name
RETURNING previous.value AS old_value, f.value AS new_value;
