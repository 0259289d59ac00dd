-- What became of an accepted request (who clicked what, and the answer they got).
UPDATE "{schema}".slack_requests
SET user_id = @user_id, user_name = @user_name, action = @action, approval_key = @approval_key,
    outcome = @outcome, detail = @detail
WHERE request_ts = @request_ts AND signature = @signature;
