-- Demo/test/benchmark fixture only: the seed's mapping written out by hand (status map, provider
-- resolved from tenant_id), deliberately independent of the engine's own mapping code so tests
-- compare the engine against a second implementation. One set-based INSERT ... SELECT.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
INSERT INTO marketplace.service_listings (
    legacy_listing_id, provider_id, title, description, price_cents, status, created_at, updated_at
)
SELECT
    s.id,
    p.id,
    s.title,
    s.description,
    s.price_cents,
    CASE s.status
        WHEN 'ACTIVE' THEN 'active' WHEN 'PAUSED' THEN 'paused'
        WHEN 'SOLD' THEN 'sold' WHEN 'ARCHIVED' THEN 'archived'
    END,
    s.created_at,
    s.updated_at
FROM zdm_copy_listings AS s
LEFT JOIN marketplace.providers AS p ON s.tenant_id = p.tenant_id
ON CONFLICT (legacy_listing_id) DO NOTHING;
