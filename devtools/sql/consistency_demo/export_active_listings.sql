-- Demo/test/benchmark fixture only: stream the ACTIVE legacy listings (the seed's scope) out of
-- the legacy database, set-based, for import_listings.sql.
COPY (
    SELECT id, tenant_id, title, description, price_cents, status, created_at, updated_at
    FROM public.marketplace_listings
    WHERE status = 'ACTIVE'
) TO STDOUT;
