-- Every applied control-schema migration, in order.
SELECT version, name, checksum, applied_at, applied_by
FROM "{schema}".schema_version
ORDER BY version;
