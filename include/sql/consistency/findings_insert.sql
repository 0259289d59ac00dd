-- Store a batch of findings, passed as one JSON array (one round trip per batch).
INSERT INTO "{schema}".consistency_findings (run_pk, check_name, kind, entity_key, columns, detail)
SELECT @run_pk, @check_name, f.kind, f.entity_key, coalesce(f.columns, '{}'), coalesce(f.detail, '{}')
FROM jsonb_to_recordset(@findings::jsonb) AS f (kind text, entity_key text, columns text [], detail jsonb);
