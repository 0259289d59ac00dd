-- Great Expectations UnexpectedRowsExpectation query: findings of one check and some kinds. GX
-- substitutes its batch (the gx_findings_asset.sql query) for "{batch}", which the loader leaves
-- as the literal {batch}; GX aliases the batch itself, so none is given here.
SELECT check_name, kind, entity_key, columns
FROM "{batch}"
WHERE check_name = @check_name AND kind = ANY(@kinds)
ORDER BY kind, entity_key;
