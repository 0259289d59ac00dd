-- Record one applied migration (in the migration's own transaction when it has one).
INSERT INTO "{schema}".schema_version (version, name, checksum, applied_by)
VALUES (@version, @name, @checksum, coalesce(@applied_by, session_user));
