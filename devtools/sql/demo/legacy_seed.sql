-- Synthetic legacy data, set-based (generate_series), sized by session settings that the loader
-- binds first: demo.listings (int) and demo.seed (float, for reproducible random()).
-- Ratios: 1 tenant per 100 listings (min 10), 1 contact per 2 listings, 1 invoice per listing,
-- 1 image per listing. Roughly 70 % of listings are ACTIVE.
SELECT setseed(current_setting('demo.seed')::float8);

INSERT INTO public.tenants (name, created_at)
SELECT 'Tenant ' || g, now() - (g || ' days')::interval
FROM generate_series(1, greatest(10, current_setting('demo.listings')::int / 100)) AS g;

INSERT INTO public.contacts (tenant_id, name, email)
SELECT 1 + (g % greatest(10, current_setting('demo.listings')::int / 100)),
       'Contact ' || g, 'contact' || g || '@example.test'
FROM generate_series(1, greatest(10, current_setting('demo.listings')::int / 2)) AS g;

INSERT INTO public.marketplace_listings (tenant_id, title, description, price_cents, status, created_at, updated_at)
SELECT 1 + (g % greatest(10, current_setting('demo.listings')::int / 100)),
       'Listing ' || g,
       CASE WHEN g % 7 = 0 THEN NULL ELSE 'Healthy puppy #' || g END,
       (1000 + floor(random() * 200000))::bigint,
       CASE WHEN random() < 0.7 THEN 'ACTIVE' WHEN random() < 0.5 THEN 'PAUSED' ELSE 'SOLD' END,
       now() - (g % 1000 || ' hours')::interval,
       now() - (g % 100 || ' hours')::interval
FROM generate_series(1, current_setting('demo.listings')::int) AS g;

INSERT INTO public.marketplace_listing_images (listing_id, url, position)
SELECT l.id, 'https://img.example.test/' || l.id || '.jpg', 0
FROM public.marketplace_listings AS l;

INSERT INTO public.invoices (tenant_id, contact_id, status, amount_cents, created_at)
SELECT c.tenant_id, c.id,
       (ARRAY['draft', 'issued', 'paid', 'void'])[1 + floor(random() * 4)::int],
       (500 + floor(random() * 100000))::bigint,
       now() - (c.id % 500 || ' hours')::interval
FROM public.contacts AS c, generate_series(1, 2) AS g;

ANALYZE public.tenants;
ANALYZE public.contacts;
ANALYZE public.invoices;
ANALYZE public.marketplace_listings;
ANALYZE public.marketplace_listing_images;
