"""Helpers for the phase-5/6 and rollback tests: compressed configs, traffic, ledger queries.

Not a conftest: import what you need. Test-side SQL is fine here (product code keeps its SQL in
include/sql).
"""

from __future__ import annotations

import copy
import random
import threading
import time
from pathlib import Path
from typing import Any

import psycopg2
import yaml

from devtools.simulator import Faults, MarketplaceApp
from migration_engine import control
from migration_engine.appclient import ControlClient
from migration_engine.config import DEFAULT_CONFIG_PATH, load_config
from tests.airflow_helpers import run_dag

SCHEMA = "migration_control"


def _merge(base: dict, overrides: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def write_config(tmp_path: Path, monkeypatch, overrides: dict[str, Any]):
    """A copy of include/migration.yaml with ``overrides`` merged in, made the active config."""
    data = _merge(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()), overrides)
    path = tmp_path / "migration.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    monkeypatch.setenv("MIGRATION_CONFIG", str(path))
    monkeypatch.delenv("MIGRATION_TIME_SCALE", raising=False)
    return load_config(path)


def prepare_control(databases) -> None:
    conn = databases.connect("legacy")
    try:
        control.ensure_control_schema(conn, SCHEMA)
    finally:
        conn.close()


def set_flags(databases, actor: str = "test", **values) -> None:
    conn = databases.connect("legacy")
    try:
        for name, value in values.items():
            control.set_flag(conn, SCHEMA, name, value, actor=actor, reason="test setup")
    finally:
        conn.close()


def flags(databases) -> dict[str, Any]:
    conn = databases.connect("legacy")
    try:
        return control.get_flags(conn, SCHEMA)
    finally:
        conn.close()


def ledger(databases, action: str | None = None, target: str | None = None) -> list[tuple]:
    """(id, at, actor, action, target, details, reason) rows, oldest first."""
    where, params = ["true"], []
    if action:
        where.append("action = %s")
        params.append(action)
    if target:
        where.append("target = %s")
        params.append(target)
    return databases.query("legacy", f"SELECT id, at, actor, action, target, details, reason "
                                     f"FROM {SCHEMA}.audit_ledger WHERE {' AND '.join(where)} ORDER BY id", params)


def gate_rows(databases, gate: str) -> list[tuple]:
    """(status, reason, figures, evaluated_at) rows of one gate, oldest first."""
    return databases.query("legacy", f"SELECT status, reason, figures, evaluated_at FROM {SCHEMA}.gate_results "
                                     f"WHERE gate = %s ORDER BY id", (gate,))


class Traffic:
    """The application simulator sending requests from a background thread until stopped."""

    def __init__(self, databases, *, rate: float = 80.0, mix=None, seed: int = 11, flag_ttl: float = 0.2,
                 flush_every: float = 0.3, faults: Faults | None = None, pool_size: int = 500,
                 entity: str = "listings", touch_columns: tuple[str, ...] = ("updated_at",), workload=None):
        """``entity``/``touch_columns``/``workload``: another config's entity (examples/library)."""
        from devtools.simulator_cli import Mix, Workload

        self.cfg = load_config()
        self.control = ControlClient(lambda: psycopg2.connect(databases.legacy_dsn), self.cfg.control_schema,
                                     instance="test-sim", flag_ttl=flag_ttl)
        self.app = MarketplaceApp(lambda: psycopg2.connect(databases.legacy_dsn),
                                  lambda: psycopg2.connect(databases.new_dsn), self.cfg, control=self.control,
                                  faults=faults or Faults(), rng=random.Random(seed), entity_name=entity,
                                  touch_columns=touch_columns)
        self.rate, self.mix, self.flush_every = rate, mix or Mix(create=1, update=1, read=8), flush_every
        self.seed, self.pool_size, self.workload = seed, pool_size, workload or Workload
        self.stop_event = threading.Event()
        self.stats = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, name="simulator", daemon=True)

    def _run(self) -> None:
        from devtools.simulator_cli import run

        try:
            self.stats = run(self.app, duration_s=0, rate_per_s=self.rate, mix=self.mix, stop=self.stop_event,
                             flush_every_s=self.flush_every, report_every_s=3600, rng=random.Random(self.seed),
                             pool_size=self.pool_size, workload=self.workload)
        except BaseException as exc:  # noqa: BLE001 - surfaced by stop()
            self.error = exc

    def inject(self, **faults) -> None:
        self.app.faults = Faults(**faults)

    def start(self) -> Traffic:
        self.thread.start()
        return self

    def stop(self):
        self.stop_event.set()
        self.thread.join(timeout=30)
        self.app.close()
        try:
            self.control.close()
        except Exception:  # noqa: BLE001
            pass
        if self.error:
            raise self.error
        return self.stats


def take_backup(cfg) -> dict:
    """A verified pre-flight backup of the legacy database (dump + archive check + ledger manifest)."""
    from migration_engine import backup

    target = backup.Target.from_conn_id(cfg.connections.legacy)
    directory = Path(cfg.backup.dir)
    directory.mkdir(parents=True, exist_ok=True)
    manifest = backup.dump(cfg, target, directory, dry_run=False)
    conn = target.connect()
    try:
        version = backup.database_info(conn)["server_version_num"]
    finally:
        conn.close()
    archive = backup.verify_archive(manifest, version)
    return backup.record_manifest(cfg, target, manifest, archive, {"skipped": True}, actor="test",
                                  context={"dag_id": "migration_preflight_backup", "run_id": "test"})


def wait_for(predicate, timeout: float, what: str, poll: float = 0.1):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(poll)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


# --- rollback scenarios 1 and 2 (one flag back, then the recovery watch) ------------------------
FLAG_ROLLBACK_CONFIG = {"cutover": {"check_interval": "1s", "min_requests_per_check": 10, "baseline_window": "2m",
                                    "flag_propagation": "500ms", "rollback_verify_window": "30s",
                                    "quiesce_timeout": "20s"}}


def check_flag_rollback(scenario: str, databases, fake_slack, tmp_path, monkeypatch) -> None:
    """Rollback scenario 1 or 2 end to end: the incident, the flag back, the recovery verified."""
    write_config(tmp_path, monkeypatch, FLAG_ROLLBACK_CONFIG)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, read_new_pct=25 if scenario == "reads" else 0)
    # The incident: new-path reads fail (scenario 2) or dual-writes fail (scenario 1).
    faults = {"new_read_error_rate": 0.5} if scenario == "reads" else {"dual_write_failure_rate": 0.4}
    traffic = Traffic(databases, rate=60).start()
    traffic.inject(**faults)
    try:
        time.sleep(3)
        dag_id = "migration_rollback_reads" if scenario == "reads" else "migration_rollback_dual_write"
        state, tasks = run_dag(dag_id, {"reason": f"test incident ({scenario})"})
    finally:
        traffic.stop()
    assert state == "success", tasks
    flag, value = ("read_new_pct", 0) if scenario == "reads" else ("dual_write_enabled", False)
    assert flags(databases)[flag] == value
    changes = ledger(databases, "set_flag", flag)
    assert changes[-1][5]["new"] == value and "test incident" in changes[-1][6]
    assert ledger(databases, f"rollback.{scenario}.applied") and ledger(databases, f"rollback.{scenario}.verified")
    status, reason, figures, _ = gate_rows(databases, "rollback_recovery")[-1]
    assert status == "passed", reason
    assert figures["requests"] >= 10
    if scenario == "reads":
        assert figures["new_path_reads"] == 0
    else:
        assert figures["dual_write_attempts"] == 0
    titles = [m["text"] for m in fake_slack.messages()]
    assert any("recovered" in t for t in titles), titles


def check_flag_rollback_dry_run(dag_id: str, databases, tmp_path, monkeypatch) -> None:
    """The dry run prints the plan only and changes nothing in either database."""
    from tests.snapshots import snapshot, unchanged

    write_config(tmp_path, monkeypatch, FLAG_ROLLBACK_CONFIG)
    prepare_control(databases)
    set_flags(databases, dual_write_enabled=True, read_new_pct=25)
    before = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    state, tasks = run_dag(dag_id, {"reason": "dry run", "dry_run": True})
    assert state == "success" and tasks["show_plan"] == "success", tasks
    assert all(s == "skipped" for t, s in tasks.items() if t not in ("choose_mode", "show_plan")), tasks
    after = [snapshot(databases.legacy_dsn), snapshot(databases.new_dsn)]
    assert unchanged(before[0], after[0]) == [] and unchanged(before[1], after[1]) == []


# --- rollback scenario 3: what the application did after the write cutover, checked independently ---------
STATUS_BACK = {"active": "ACTIVE", "paused": "PAUSED", "sold": "SOLD", "archived": "ARCHIVED"}


def post_cutover_writes(databases, *, creates: int = 3, updates: int = 3, deletes: int = 3) -> dict[str, list]:
    """The application after the write cutover (keep_old_sync off): rows created, updated and deleted in the
    new table only. Returns the new ids created, the old ids updated and the old ids deleted."""
    provider = databases.query("new", "SELECT id FROM marketplace.providers ORDER BY id LIMIT 1")[0][0]
    created = [r[0] for r in databases.query(
        "new", "INSERT INTO marketplace.service_listings (provider_id, title, description, price_cents, status) "
               "SELECT %s, 'created after cutover ' || g, NULL, 1000 + g, 'active' FROM generate_series(1, %s) g "
               "RETURNING id", (provider, creates))]
    linked = [r[0] for r in databases.query(
        "new", "SELECT legacy_listing_id FROM marketplace.service_listings WHERE legacy_listing_id IS NOT NULL "
               "ORDER BY legacy_listing_id LIMIT %s", (updates + deletes,))]
    updated, deleted = linked[:updates], linked[updates:]
    databases.query("new", "UPDATE marketplace.service_listings SET title = title || ' (edited)', "
                           "price_cents = price_cents + 1, status = CASE WHEN legacy_listing_id = %s THEN 'sold' "
                           "ELSE status END, updated_at = now() WHERE legacy_listing_id = ANY(%s)",
                    (updated[0], updated))
    databases.query("new", "DELETE FROM marketplace.service_listings WHERE legacy_listing_id = ANY(%s)", (deleted,))
    return {"created": created, "updated": updated, "deleted": deleted}


def old_vs_new(databases) -> list[tuple]:
    """Every difference between the old table and the new table's state, per row, both ways (test-side SQL).

    new -> old: each new row has an old key and the old row holds its reverse-mapped values; old -> new:
    each old ACTIVE row (the migration's scope) is linked by a live new row, so a row deleted in the new
    table must be gone from the old one or out of scope there (marked ARCHIVED)."""
    new = {r[0]: r[1:] for r in databases.query(
        "new", "SELECT s.id, s.legacy_listing_id, p.tenant_id, s.title, s.description, s.price_cents, s.status, "
               "s.created_at, s.updated_at FROM marketplace.service_listings s "
               "LEFT JOIN marketplace.providers p ON p.id = s.provider_id")}
    old = {r[0]: r[1:] for r in databases.query(
        "legacy", "SELECT id, tenant_id, title, description, price_cents, status, created_at, updated_at "
                  "FROM public.marketplace_listings")}
    problems: list[tuple] = []
    linked = set()
    for new_id, (legacy_id, tenant_id, title, desc, price, status, created, updated) in new.items():
        want = (tenant_id, title, desc, price, STATUS_BACK.get(status, status), created, updated)
        linked.add(legacy_id)
        if legacy_id is None or old.get(legacy_id) != want:
            problems.append(("new row not in old as it is in new", new_id, legacy_id, want, old.get(legacy_id)))
    for old_id, row in old.items():
        if row[4] == "ACTIVE" and old_id not in linked:
            problems.append(("old in-scope row without a live new row", old_id, row))
    return problems


# --- phase 5: fast windows shared by the checklist and cutover tests --------------------------
INTERVAL_S = 1.0


def cutover_overrides(tmp_path) -> dict:
    """Windows, holds and intervals of seconds: the phase-5 checklist and rollout in a test's time."""
    return {
        "backup": {"dir": str(tmp_path / "backups"), "verify_restore": False},
        "dual_write": {"poke_interval": "1s", "min_attempts": 50, "max_gap": "10m"},
        "cutover": {
            "dual_write_window": "10m", "shadow_window": "10m", "shadow_min_reads": 100,
            "consistency_max_age": "10m", "backup_max_age": "10m", "checklist_timeout": "30s",
            "check_interval": f"{int(INTERVAL_S * 1000)}ms", "min_requests_per_check": 4,
            "baseline_window": "2m", "max_inconclusive_checks": 3, "flag_propagation": "300ms",
            "rollout": [{"pct": 10, "hold": "4s"}, {"pct": 25, "hold": "3s"}, {"pct": 50, "hold": "3s"},
                        {"pct": 100, "hold": "3s"}],
            "keep_old_sync": "2s",
            "performance_window": "10m", "performance_min_samples": 100,
            # the simulator's reads stall for tens of ms on a loaded CI machine (one spike to 25 ms vs
            # 10 ms rolled a 10 % step back); the latency rollback test injects +150 ms, which the
            # histogram's bucket floor (100 ms) still shows as more than this above the old path
            "performance_min_increase_ms": 50,
        },
    }


# --- phase 6: the consistency history the drop needs ------------------------------------------------
def plant_consistency_runs(databases, *, end, span, every, status: str = "passed") -> int:
    """Full consistency runs finished every ``every`` over ``span`` up to ``end`` (the hourly DAG's history)."""
    rows = databases.query(
        "legacy", f"INSERT INTO {SCHEMA}.consistency_runs (kind, status, dag_id, run_id, started_at, finished_at) "
                  "SELECT 'full', %s, 'migration_consistency_hourly', 'planted', t - interval '1 minute', t "
                  "FROM generate_series(%s::timestamptz - %s::interval, %s::timestamptz, %s::interval) AS t "
                  "RETURNING id", (status, end, span, end, every))
    return len(rows)
