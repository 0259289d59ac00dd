-- Least privilege for the application's database role on the control schema (docs/deployment.md):
-- it reads the feature flags and writes its per-minute stats, nothing else. It cannot change a flag,
-- the audit ledger, gate results, step state, backfill/consistency runs or approvals; the flags
-- change only through the DAGs (the migration role, which owns the schema).
GRANT USAGE ON SCHEMA "{schema}" TO "{app_role}";
GRANT SELECT ON "{schema}".feature_flags TO "{app_role}";
GRANT SELECT, INSERT, UPDATE ON "{schema}".dual_write_stats, "{schema}".shadow_read_stats, "{schema}".path_stats
    TO "{app_role}";
GRANT INSERT ON "{schema}".shadow_read_mismatches TO "{app_role}";
