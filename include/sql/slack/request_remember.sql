-- Remember one signed request; no row back means this exact request was seen before (a replay).
INSERT INTO "{schema}".slack_requests (request_ts, signature)
VALUES (@request_ts, @signature)
ON CONFLICT (request_ts, signature) DO NOTHING
RETURNING received_at;
