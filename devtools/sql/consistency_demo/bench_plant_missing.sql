-- Benchmark fixture only: delete some copied listings from the new table (missing in new).
SET lock_timeout = '5s';
SET statement_timeout = '1min';
DELETE FROM marketplace.service_listings AS n
WHERE n.legacy_listing_id = ANY(@keys)
RETURNING n.legacy_listing_id;
