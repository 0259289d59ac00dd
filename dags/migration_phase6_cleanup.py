"""migration_phase6_cleanup: seed Phase 6 - archive the old tables, and drop them after retention.

Trigger with **action** = `archive` (default) or `drop`; **dry_run** prints the exact SQL of the
action's steps (archive: the flag UPDATEs, the renames and comments, the ledger records; drop: the
DROP statements) and changes nothing. Every change is a step run by `run_steps` (state in
`step_state`, one ledger entry per real change).

`action=archive`:

1. **check_write_cutover_age** - `write_to_new` is on and was switched at least
   `cleanup.min_age_after_write_cutover` ago (seed: 1 week; from the audit ledger). Fails with the
   date cleanup is allowed from.
2. **plan_archive** - what is still to archive; if every table is already archived the run stops
   here (a re-run is a no-op: nothing renamed, no comment or date changed, nothing audited).
3. **approve_archive** - human approval (gate `archive_old_tables`).
4. **stop_old_writes** - `dual_write_enabled`, `keep_old_sync` and `shadow_read_pct` off (audited), then the old
   tables must show no writes (`pg_stat_user_tables`) for `cleanup.quiet_period`.
5. **archive_tables** - `RENAME TO <table>_archived` + `COMMENT ON TABLE` with the archive date and
   the safe-drop date (archive + `cleanup.archive_retention`, seed 90 days), one transaction per
   table, lock_timeout + retry; one `cleanup.archived` ledger record per table.

`action=drop` (run it once the safe-drop date has passed):

1. **check_drop_allowed** - refuses before the safe-drop date, if an archived table received any
   write since archiving (its `pg_stat_user_tables` counter moved) or the statistics were reset
   (cannot prove it), or if a table was re-created.
2. **approve_drop** - human approval (gate `drop_old_tables`; irreversible).
3. **drop_archived** - `DROP TABLE` of all archived tables in one statement without CASCADE,
   then the legacy columns (`cleanup.drop_columns`); verified and audited.

See docs/phase6-cleanup.md.
"""

from __future__ import annotations

from airflow.sdk import Param, chain, task

from migration_engine.airflow.dags import migration_dag
from migration_engine.airflow.dry_run import choose
from migration_engine.airflow.tasks import on_legacy, one_shot_gate, run_steps
from migration_engine.cutover.approval import approval

PARAMS = {
    "action": Param("archive", type="string", enum=["archive", "drop"], title="Action",
                    description="archive: rename the old tables (after the write-cutover gate). "
                                "drop: drop the archived tables and legacy columns (after the safe-drop date)."),
    "dry_run": Param(False, type="boolean", title="Dry run",
                     description="Print the exact SQL the action would send and change nothing."),
}


@migration_dag("migration_phase6_cleanup", doc_md=__doc__, tags_=("phase6", "cleanup"), params=PARAMS)
def migration_phase6_cleanup():
    @task.branch
    def choose_action(params: dict | None = None) -> str:
        return choose("show_plan", "check_write_cutover_age" if params["action"] == "archive" else "check_drop_allowed")

    @task
    def show_plan(params: dict | None = None) -> dict:
        from migration_engine import cleanup

        return run_steps(cleanup.steps_for(params["action"]), dry=True)

    @task
    def check_write_cutover_age() -> dict:
        from migration_engine import cleanup

        return one_shot_gate(cleanup.write_cutover_age, "cleanup refused")

    @task.short_circuit
    def plan_archive() -> bool:
        from migration_engine import cleanup

        return on_legacy(cleanup.archive_needed)

    approve_archive = approval(
        "approve_archive",
        "Archive (rename) the old tables?",
        "Renames the old tables to `*_archived` after turning dual-write and "
        "keep_old_sync off and checking that nothing writes them. Reversible (rename back).",
        gate="archive_old_tables",
        figures_from=["check_write_cutover_age"],
    )

    @task
    def stop_old_writes() -> dict:
        from migration_engine import cleanup

        return on_legacy(cleanup.stop_old_writes)

    @task
    def archive_tables() -> dict:
        from migration_engine import cleanup

        return run_steps(cleanup.archive_steps)

    @task
    def check_drop_allowed() -> dict:
        from migration_engine import cleanup

        return one_shot_gate(cleanup.drop_readiness, "drop refused")

    approve_drop = approval(
        "approve_drop",
        "Drop the archived tables and legacy columns? (irreversible)",
        "The safe-drop date has passed and the archived tables received no writes since archiving. "
        "Approving drops them (no CASCADE) and the configured legacy columns.",
        gate="drop_old_tables",
        figures_from=["check_drop_allowed"],
    )

    @task
    def drop_archived() -> dict:
        from migration_engine import cleanup

        return run_steps(cleanup.drop_steps)

    branch = choose_action()
    branch >> show_plan()
    chain(branch, check_write_cutover_age(), plan_archive(), approve_archive, stop_old_writes(), archive_tables())
    chain(branch, check_drop_allowed(), approve_drop, drop_archived())


migration_phase6_cleanup()
