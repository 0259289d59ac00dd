-- Store a batch of findings, passed as one JSON array (one round trip per batch). entity_key is
-- the key's exact text form, key_type the key column's type (NULL when the key is not a table key).
INSERT INTO "{schema}".consistency_findings (run_pk, check_name, kind, entity_key, key_type, columns, detail)
SELECT @run_pk, @check_name, f.kind, f.entity_key, f.key_type, coalesce(f.columns, '{}'), coalesce(f.detail, '{}')
FROM jsonb_to_recordset(@findings::jsonb) AS f (kind text, entity_key text, key_type text, columns text [], detail jsonb);
