-- Remember where the Data Docs of a run are (set by the suites task).
UPDATE "{schema}".consistency_runs
SET data_docs = @data_docs
WHERE id = @run_pk;
