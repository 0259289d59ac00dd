-- Benchmark fixture only: listings that exist only in the new table (legacy ids no old row has).
SET lock_timeout = '5s';
SET statement_timeout = '1min';
INSERT INTO marketplace.service_listings (legacy_listing_id, provider_id, title, price_cents, status)
SELECT k, 1, 'only in new ' || k, 100, 'active'
FROM unnest(@keys::bigint []) AS k
RETURNING legacy_listing_id;
