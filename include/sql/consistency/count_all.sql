-- Count parity: all rows of one side.
SELECT count(*) FROM "{table}";
