-- Preflight: the labels of an enum type, in order (each must be valid in the new column's type:
-- enum types of two databases are compared by their labels, not their oids). Read-only.
SELECT e.enumlabel::text
FROM pg_enum AS e
WHERE e.enumtypid = @type_oid
ORDER BY e.enumsortorder;
