-- Rollback scenario 3: reserve a new old-table key for a row created after the cutover.
SELECT nextval(@sequence_name::regclass);
