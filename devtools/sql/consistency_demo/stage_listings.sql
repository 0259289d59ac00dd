-- Demo/test/benchmark fixture only (devtools.demo_copy): a session-private
-- staging table in the NEW database for the legacy listings streamed over by COPY.
SET lock_timeout = '5s';
SET statement_timeout = '10min';
CREATE TEMPORARY TABLE IF NOT EXISTS zdm_copy_listings (
    id bigint PRIMARY KEY,
    tenant_id bigint NOT NULL,
    title text NOT NULL,
    description text,
    price_cents bigint NOT NULL,
    status text NOT NULL,
    created_at timestamptz NOT NULL,
    updated_at timestamptz NOT NULL
);
TRUNCATE zdm_copy_listings;
