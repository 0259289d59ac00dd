-- Preflight: does a config value (a map's target value) parse as the new column's type? Run inside
-- a savepoint of a read-only transaction; an error means it does not. Reads nothing.
SELECT CAST(CAST(@value AS text) AS "{type_schema}"."{type_name}");
