-- Reference data the new side already has before the migration starts: one provider per legacy
-- tenant (the seed's resolveProviderId), marketplace users, and transactions that point at legacy
-- invoices by id (the cross-database reference). Bound first: demo.tenants, demo.users,
-- demo.transactions, demo.max_invoice_id, demo.seed. service_listings starts empty.
SELECT setseed(current_setting('demo.seed')::float8);

INSERT INTO marketplace.providers (tenant_id, display_name)
SELECT g, 'Provider for tenant ' || g
FROM generate_series(1, current_setting('demo.tenants')::int) AS g
ON CONFLICT (tenant_id) DO NOTHING;

INSERT INTO marketplace.users (email)
SELECT 'buyer' || g || '@example.test'
FROM generate_series(1, current_setting('demo.users')::int) AS g;

INSERT INTO marketplace.transactions (buyer_user_id, tenant_invoice_id, amount_cents, status)
SELECT 1 + (g % current_setting('demo.users')::int),
       1 + (g % current_setting('demo.max_invoice_id')::int),
       (500 + floor(random() * 100000))::bigint,
       'completed'
FROM generate_series(1, current_setting('demo.transactions')::int) AS g;

ANALYZE marketplace.providers;
ANALYZE marketplace.users;
ANALYZE marketplace.transactions;
