-- When pg_stat_statements' counters were last reset (its cumulative figures start there).
SELECT stats_reset FROM "{ext_schema}".pg_stat_statements_info
