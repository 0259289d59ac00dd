-- Benchmark fixture only (bench/diff_bench.py): the legacy listings as reladiff must see them to
-- compare like with like - in scope (ACTIVE), status mapped - the same work our diff does in SQL.
SET lock_timeout = '5s';
SET statement_timeout = '1min';
CREATE OR REPLACE VIEW public.zdm_bench_old_listings AS
SELECT
    l.id,
    l.title,
    l.description,
    l.price_cents,
    CASE l.status
        WHEN 'ACTIVE' THEN 'active' WHEN 'PAUSED' THEN 'paused'
        WHEN 'SOLD' THEN 'sold' WHEN 'ARCHIVED' THEN 'archived'
    END AS status,
    l.created_at,
    l.updated_at,
    l.tenant_id
FROM public.marketplace_listings AS l
WHERE l.status = 'ACTIVE';
