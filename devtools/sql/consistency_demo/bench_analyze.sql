-- Benchmark fixture only: fresh planner statistics after the bulk copy.
SET statement_timeout = '5min';
ANALYZE marketplace.service_listings;
