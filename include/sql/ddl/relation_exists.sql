SELECT to_regclass(@qualified_name) IS NOT NULL;
