-- Application simulator: update one row found by "{match}" and return it as it now is.
-- "{columns}" / "{values}" are lists composed from the changed fields (touched timestamp columns
-- get now()); "{returning}" is the column list the caller maps or compares.
UPDATE "{table}"
SET ("{columns}") = ROW("{values}")
WHERE "{match}" = @match_value
RETURNING "{returning}";
