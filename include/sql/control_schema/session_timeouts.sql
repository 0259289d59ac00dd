-- The session's timeouts before the runner set its own: restored afterwards, so a caller's
-- connection keeps the settings it had.
SELECT current_setting('lock_timeout') AS lock_timeout,
       current_setting('statement_timeout') AS statement_timeout;
