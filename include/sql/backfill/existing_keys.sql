-- Backfill recheck, legacy side (only after the range count dropped): which copied keys still exist.
SELECT src."{key}" FROM "{old_schema}"."{old_table}" AS src WHERE src."{key}" = ANY(@keys::"{key_type}" []);
