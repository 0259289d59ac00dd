"""The shipped library example (examples/library) runs every DAG with no code change, in both modes.

Two databases, and ``same_database: true`` (schema circulation inside the legacy database). One
scenario per mode, in the runbook's order, with the application simulator (the library's
workload, examples/library/traffic.py) sending real traffic from phase 2 on, so the dual-write,
shadow-read and read-rollout gates judge what it reports:

setup -> pre-flight backup -> phase 1 -> phase-1 rollback -> phase 1 -> phase 2 -> rollback_dual_write
-> phase 2 (catches up) -> phase 3 -> phase 4 -> phase 5 (write cutover rejected) -> rollback_reads ->
phase 5 -> rollback_writes -> [old == new per row] -> phase 5 -> phase 6 archive -> phase 6 drop.

Old == new is checked by test-side SQL that maps the rows itself (not the engine's diff): after
phase 2, and after rollback scenario 3 brought the writes made in circulation back to the old table.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import pytest

from examples.library import seed as library_seed
from examples.library.traffic import TOUCH_COLUMNS, FineWorkload, LoanWorkload
from migration_engine.config import load_config
from tests.airflow_helpers import run_dag
from tests.cutover_fixtures import Traffic, flags, ledger
from tests.hitl_helpers import Answer, run_dag_answering

pytestmark = pytest.mark.timeout(900, method="thread")

STATE_MAP = {"OUT": "on_loan", "RENEWED": "renewed", "OVERDUE": "overdue", "RETURNED": "returned"}
SCOPE = ("MAIN", "EAST")
WORKLOADS = {"loans": LoanWorkload, "fines": FineWorkload}


def old_vs_new(dbs) -> list[tuple]:
    """Every difference between the in-scope old loans and circulation.loans, both ways (test-side SQL)."""
    old = {r[0]: (r[1], r[2], r[3], STATE_MAP.get(r[4], r[4]), *r[5:]) for r in dbs.query(
        "legacy", "SELECT loan_no, patron_no, isbn, branch_code, loan_state, checked_out_at, due_back, renewals, "
                  "last_modified FROM public.book_loans WHERE branch_code = ANY(%s)", (list(SCOPE),))}
    new = {}
    problems: list[tuple] = []
    for row in dbs.query("new", "SELECT l.loan_id, l.legacy_loan_no, m.legacy_patron_no, l.isbn, l.branch, "
                                "l.status, l.borrowed_at, l.due_on, l.renewal_count, l.changed_at "
                                "FROM circulation.loans l LEFT JOIN circulation.members m USING (member_id)"):
        if row[1] is None:
            problems.append(("new row without an old key", row))
        else:
            new[row[1]] = tuple(row[2:])
    for key in sorted(old.keys() - new.keys()):
        problems.append(("missing in new", key, old[key]))
    for key in sorted(new.keys() - old.keys()):
        problems.append(("extra in new", key, new[key]))
    for key in sorted(old.keys() & new.keys()):
        if old[key] != new[key]:
            problems.append(("differs", key, old[key], new[key]))
    return problems


def old_vs_new_fines(dbs) -> list[tuple]:
    """The same for the fines of migration.full.yaml: uuid keys, amount x 100 == amount_cents exactly."""
    old = {str(r[0]): tuple(r[1:]) for r in dbs.query(
        "legacy", "SELECT fine_id, loan_no, amount * 100, reason, assessed_at, last_modified FROM public.patron_fines")}
    new = {str(r[0]): tuple(r[1:]) for r in dbs.query(
        "new", "SELECT legacy_fine_id, legacy_loan_no, amount_cents, reason, assessed_at, changed_at "
               "FROM circulation.fines")}
    problems = [("missing in new", k) for k in sorted(old.keys() - new.keys())]
    problems += [("extra in new", k) for k in sorted(new.keys() - old.keys())]
    return problems + [("differs", k, old[k], new[k]) for k in sorted(old.keys() & new.keys()) if old[k] != new[k]]


class Scenario:
    """Runs the DAGs in order, asserting each run's state; keeps how long each took (printed)."""

    def __init__(self, dbs):
        self.dbs = dbs
        self.timings: list[tuple[str, float]] = []
        self.traffic: list[Traffic] = []
        self.entities = list(load_config().entities)

    def run(self, dag_id: str, conf: dict | None = None, *, answers=(), expect: str = "success",
            label: str | None = None) -> dict:
        started = time.monotonic()
        if answers:
            result = run_dag_answering(dag_id, list(answers), conf=conf, timeout=150)
            state, tasks = result.state, result.tasks
            assert not result.unanswered, (dag_id, result.unanswered, tasks)
        else:
            state, tasks = run_dag(dag_id, conf)
        self.timings.append((label or dag_id, time.monotonic() - started))
        assert state == expect, (label or dag_id, state, {t: s for t, s in tasks.items() if s != "success"})
        return tasks

    def start_traffic(self) -> None:
        from devtools.simulator_cli import Mix

        self.traffic = [Traffic(self.dbs, rate=100 if entity == "loans" else 20, mix=Mix(create=1, update=1, read=8),
                                entity=entity, touch_columns=TOUCH_COLUMNS, workload=WORKLOADS[entity],
                                seed=11 + i).start()
                        for i, entity in enumerate(self.entities)]

    def stop_traffic(self) -> list:
        traffic, self.traffic = self.traffic, []
        return [t.stop() for t in traffic]

    def wait_for_fresh_window(self, since: datetime) -> None:
        """Until ``cutover.shadow_window`` fits in the minute buckets that began after ``since``."""
        window = load_config().cutover.shadow_window
        first_bucket = since.replace(second=0, microsecond=0) + timedelta(minutes=1)
        started = time.monotonic()
        time.sleep(max(0.0, (first_bucket + window + timedelta(seconds=1) - datetime.now(UTC)).total_seconds()))
        self.timings.append(("wait for a shadow window after the rollback", time.monotonic() - started))

    def old_equals_new(self) -> None:
        assert old_vs_new(self.dbs) == []
        if "fines" in self.entities:
            assert old_vs_new_fines(self.dbs) == []

    def link_patrons(self) -> int | None:
        legacy, new = self.dbs.connect("legacy"), self.dbs.connect("new")
        try:
            return library_seed.link_patrons(legacy, new)
        finally:
            legacy.close()
            new.close()


def _columns(dbs, table: str) -> set[str]:
    return {r[0] for r in dbs.query("legacy", "SELECT column_name FROM information_schema.columns "
                                              "WHERE table_schema = 'public' AND table_name = %s", (table,))}


def _exists(dbs, name: str) -> bool:
    return dbs.query("legacy", "SELECT to_regclass(%s) IS NOT NULL", (name,))[0][0]


def test_library_example_runs_every_dag(library_dbs, library_config, library_mode, airflow_db, fake_slack):
    dbs, s = library_dbs, Scenario(library_dbs)
    try:
        # setup, backup, phase 1 and its rollback, phase 1 again
        s.run("migration_setup")
        s.run("migration_preflight_backup")
        assert ledger(dbs, "backup.manifest")
        s.run("migration_phase1_schema_prep")
        assert {"circulation_member_id", "notice_channel"} <= _columns(dbs, "patrons")
        assert dbs.query("legacy", "SELECT count(*) FROM public.patrons WHERE notice_channel IS DISTINCT FROM "
                                   "'email'") == [(0,)]
        s.run("migration_phase1_rollback", answers=[Answer("approve_rollback", "Approve")])
        assert not {"circulation_member_id", "notice_channel"} & _columns(dbs, "patrons")
        s.run("migration_phase1_schema_prep", label="migration_phase1_schema_prep (again)")
        assert s.link_patrons() == library_seed.PATRONS  # the application's part: patrons -> members

        # phase 2 with live traffic; scenario 1 turns dual-write off, phase 2 again catches up
        s.start_traffic()
        time.sleep(2)
        s.run("migration_phase2_dual_write")
        assert flags(dbs)["dual_write_enabled"] is True
        s.run("migration_rollback_dual_write", {"reason": "example: dual-write drill"})
        assert flags(dbs)["dual_write_enabled"] is False
        time.sleep(2)  # loans written meanwhile reach the old table only
        s.run("migration_phase2_dual_write", label="migration_phase2_dual_write (again)")
        assert flags(dbs)["dual_write_enabled"] is True
        s.stop_traffic()
        s.old_equals_new()
        s.start_traffic()

        s.run("migration_phase3_data_migration")
        s.run("migration_phase4_validation")
        # phase 5: reads move to 100 %, the write cutover is rejected; scenario 2 brings reads back
        s.run("migration_phase5_cutover", answers=[Answer("approve_read_cutover", "Approve"),
                                                   Answer("approve_write_cutover", "Reject")],
              label="migration_phase5_cutover (write cutover rejected)")
        assert flags(dbs)["read_new_pct"] == 100 and flags(dbs)["write_to_new"] is False
        s.run("migration_rollback_reads", {"reason": "example: read rollback drill"})
        assert flags(dbs)["read_new_pct"] == 0
        s.run("migration_phase5_cutover", answers=[Answer("approve_read_cutover", "Approve"),
                                                   Answer("approve_write_cutover", "Approve")])
        f = flags(dbs)
        assert (f["read_new_pct"], f["write_to_new"], f["keep_old_sync"]) == (100, True, False), f
        time.sleep(2)  # loans created and changed in circulation only
        assert dbs.query("new", "SELECT count(*) FROM circulation.loans WHERE legacy_loan_no IS NULL")[0][0] > 0
        # scenario 3: writes back to the old table, everything written in circulation carried back
        s.run("migration_rollback_writes", answers=[Answer("approve_rollback", "Approve")])
        rolled_back_at = datetime.now(UTC)
        f = flags(dbs)
        assert (f["write_to_new"], f["read_new_pct"], f["maintenance_mode"]) == (False, 0, False), f
        s.stop_traffic()
        s.old_equals_new()
        s.start_traffic()

        # Before trying again: the old tables are authoritative and dual-written; the shadow reads made
        # while writes were on circulation alone differed (correctly), so the checklist's shadow window
        # must pass in sync first. The stats are per minute: the window has to start in a minute
        # bucket after the rollback. Phase 3 re-checks the data meanwhile.
        s.run("migration_phase3_data_migration", label="migration_phase3_data_migration (after scenario 3)")
        s.wait_for_fresh_window(rolled_back_at)
        # the cutover again, then phase 6: archive, drop after the retention
        s.run("migration_phase5_cutover", answers=[Answer("approve_read_cutover", "Approve"),
                                                   Answer("approve_write_cutover", "Approve")],
              label="migration_phase5_cutover (after scenario 3)")
        assert flags(dbs)["write_to_new"] is True
        time.sleep(1.2)  # cleanup.min_age_after_write_cutover
        s.run("migration_phase6_cleanup", {"action": "archive"}, answers=[Answer("approve_archive", "Approve")])
        assert not _exists(dbs, "public.book_loans") and _exists(dbs, "public.book_loans_archived")
        time.sleep(4.5)  # cleanup.archive_retention
        s.run("migration_phase6_cleanup", {"action": "drop"}, answers=[Answer("approve_drop", "Approve")],
              label="migration_phase6_cleanup (drop)")
        assert not _exists(dbs, "public.book_loans_archived")
        assert "card_barcode" not in _columns(dbs, "patrons")
        stats = s.stop_traffic()
        # the application kept working on circulation after the old table was gone
        assert all(st.errors.get("create", 0) == 0 for st in stats), stats
    finally:
        s.stop_traffic()
        print(f"\nlibrary example, {library_mode}: " + ", ".join(f"{n} {t:.0f}s" for n, t in s.timings)
              + f"; total {sum(t for _, t in s.timings):.0f}s")
