-- Expression fragment (not run on its own; composed by migration_engine.consistency.plan into
-- the column list of old_buckets.sql / old_rows.sql): an old column's value through the config's
-- value map (ACTIVE -> active); a value the map does not list becomes NULL. "{value_map}" is filled
-- with a bound-parameter placeholder (psycopg2.sql.Placeholder, one per mapped column, bound to
-- the map as JSON), not an identifier. A lookup in a constant jsonb costs about what a CASE does.
SELECT ("{value_map}"::jsonb ->> t."{column}"::text);
