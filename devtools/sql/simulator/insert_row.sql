-- Application simulator: insert one row and return it (the written values, defaults included).
-- "{columns}", "{values}" and "{returning}" are lists composed by devtools.simulator from
-- the entity's column mapping: a column list, the matching bound values, the columns to return.
INSERT INTO "{table}" ("{columns}")
VALUES ("{values}")
RETURNING "{returning}";
