-- The demo and the test databases track statements (the performance page's per-table latency).
-- Needs shared_preload_libraries = 'pg_stat_statements' at server start (devtools/pgcluster.py).
-- squawk-ignore-file require-lock-timeout, require-statement-timeout
-- (a throwaway demo/test database at set-up time: nothing else runs; the extension creates its own views)
CREATE EXTENSION IF NOT EXISTS pg_stat_statements;
