-- Benchmark fixture only: change the title of the listings @keys in the new table.
SET lock_timeout = '5s';
SET statement_timeout = '1min';
UPDATE marketplace.service_listings AS n
SET title = n.title || ' (edited)'
WHERE n.legacy_listing_id = ANY(@keys)
RETURNING n.legacy_listing_id;
