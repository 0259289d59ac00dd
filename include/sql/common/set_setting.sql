-- Bind a session setting (custom GUCs such as demo.listings, or lock_timeout) as a value.
SELECT set_config(@name, @value, @is_local);
