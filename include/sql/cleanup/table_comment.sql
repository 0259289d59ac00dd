-- The comment on a table (NULL when the table or the comment does not exist).
SELECT obj_description(to_regclass(@qualified_name), 'pg_class');
