-- The type of a result column (its oid from the driver's cursor description), spelled as SQL.
SELECT format_type(@type_oid::oid, NULL);
