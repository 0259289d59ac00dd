-- Rollback scenario 3: write one row into the old table under its known old key - inserted if it
-- is missing, overwritten if it differs (the new table was authoritative since the cutover).
-- OVERRIDING SYSTEM VALUE: the key may be a GENERATED ALWAYS identity; the value is the row's own
-- old key (or one reserved from the key's sequence), never a guess. "{columns}", "{values}" and
-- "{excluded}" are composed from the reverse column mapping.
INSERT INTO "{table}" ("{key}", "{columns}") OVERRIDING SYSTEM VALUE
VALUES (@key_value, "{values}")
ON CONFLICT ("{key}") DO UPDATE
SET ("{columns}") = ROW("{excluded}");
