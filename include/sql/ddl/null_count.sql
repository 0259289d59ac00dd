SELECT count(*) FROM "{schema}"."{table}" WHERE "{column}" IS NULL;
