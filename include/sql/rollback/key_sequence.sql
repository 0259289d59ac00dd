-- Rollback scenario 3: the sequence behind the old table's key (serial or identity), if any.
SELECT pg_get_serial_sequence(@table_name, @key_column);
