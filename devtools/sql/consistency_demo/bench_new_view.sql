-- Benchmark fixture only (bench/diff_bench.py): the new listings for reladiff, keyed by the legacy
-- id, provider translated back to the tenant (the same reverse lookup our diff does, as a join:
-- a per-row subquery would make reladiff's side needlessly slow).
SET lock_timeout = '5s';
SET statement_timeout = '1min';
CREATE OR REPLACE VIEW marketplace.zdm_bench_new_listings AS
SELECT
    n.legacy_listing_id AS id,
    n.title,
    n.description,
    n.price_cents,
    n.status,
    n.created_at,
    n.updated_at,
    p.tenant_id
FROM marketplace.service_listings AS n
LEFT JOIN marketplace.providers AS p ON n.provider_id = p.id
WHERE n.status = 'active' AND n.legacy_listing_id IS NOT NULL;
