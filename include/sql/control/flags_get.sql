SELECT name, value, updated_at, updated_by FROM "{schema}".feature_flags ORDER BY name;
