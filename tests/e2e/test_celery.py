"""Phase 2 on CeleryExecutor for real: Redis, the Airflow services and two Celery workers as processes.

What the compose file runs, natively: Debian's ``redis-server`` (the broker, started here by PID),
``airflow scheduler``, ``triggerer``, ``dag-processor``, ``api-server`` and two ``airflow celery
worker`` processes with distinct ``--celery-hostname`` (and ``ZDM_HOSTNAME`` for Airflow's
``hostname_callable``, so each task instance says which worker ran it). Airflow's metadata DB and
Celery's result backend are a database in this session's PostgreSQL cluster, never SQLite.

``migration_phase2_dual_write`` runs with four parallel ranges and a rows/s cap (so a range lasts
long enough to be interrupted): the mapped ranges run on both workers, the two gates wait in the
triggerer, and one worker is SIGKILLed (its whole process group: a lost machine) while its range is
mid-way. The scheduler notices the missing heartbeat (``[scheduler] task_instance_heartbeat_timeout``
set low here; 300 s by default, docs/deployment.md), the retry runs on the other worker and resumes
from the range's checkpoint, and old == new at the end, row by row.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import pytest

from devtools.pgcluster import free_port
from devtools.services import HOSTNAME_ENV, Redis, ServiceError, redis_server_binary
from tests.airflow_stack import wait_until
from tests.backfill_fixtures import add_listings, compare
from tests.gate_fixtures import SCHEMA, gate_rows, write_stats
from tests.slack_fixtures import query

DAG_ID = "migration_phase2_dual_write"
WORKERS = ("worker-a", "worker-b")
RANGES = 4
BATCH = 100
HEARTBEAT_TIMEOUT = 20  # seconds; the default is 300 (docs/deployment.md says why and what to set)
# the gate watch logs state changes ("evaluation 2: *** waiting -> PASSED ***") and the final pass
GATE_PASSED = re.compile(r"gate dual_write_health (evaluation \d+: \*\*\* (\w+ -> )?PASSED|passed after)")

pytestmark = pytest.mark.timeout(480)


@pytest.fixture
def celery_stack(airflow_stack, databases, fake_slack, tmp_path, artifacts_dir):  # env: their connections
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server as root with apt)")
    redis = Redis(free_port(), tmp_path / "redis")
    stack = airflow_stack("airflow_celery", executor="CeleryExecutor", config=_config(tmp_path / "migration.yaml"),
                          env={
                              "AIRFLOW__CELERY__BROKER_URL": redis.url,
                              "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
                              # as in docker-compose.yaml: longer than any task runs, so Redis never hands a
                              # running task to a second worker; a lost worker is the scheduler's heartbeat
                              # timeout's job
                              "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
                              "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
                              "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
                          })
    stack.env["AIRFLOW__CELERY__RESULT_BACKEND"] = f"db+{stack.sqla}"
    try:
        redis.start()
        redis.wait_ready()
        stack.migrate()
        stack.start_core()
        for name in WORKERS:
            stack.start(name, ["celery", "worker", "--celery-hostname", name, "--concurrency", "2",
                               "--skip-serve-logs", "--pid", str(tmp_path / f"{name}.pid")], {HOSTNAME_ENV: name})
        for name in WORKERS:
            worker = stack.services[name]
            wait_until(f"{name} to join", lambda w=worker: f"{w.name} ready." in w.output(), 180,
                       [redis, *stack.alive()])
        yield SimpleNamespace(api=stack.api, meta_dsn=stack.meta_dsn, services={"redis": redis, **stack.services},
                              redis=redis, env=stack.env, logs=stack.logs, home=stack.home)
    finally:
        stack.close(artifacts_dir)  # the Airflow processes first, then their broker
        redis.stop()


def _config(path: Path) -> Path:
    """The default config with the batch size held at BATCH (not adapted upward): a range then lasts
    rows / cap seconds and checkpoints every batch, so it can be interrupted mid-way."""
    import yaml

    from migration_engine.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["backfill"].update(batch_size=BATCH, min_batch_size=BATCH, max_batch_size=BATCH)
    path.write_text(yaml.safe_dump(data))
    return path


def _tries(meta_dsn: str, run_id: str, task_id: str) -> list[tuple]:
    """Every try of a task (map_index, try_number, hostname, state): history plus the current one."""
    cols = "map_index, try_number, hostname, state"
    return sorted(query(meta_dsn, f"SELECT {cols} FROM task_instance_history WHERE dag_id = %(d)s "
                                      f"AND run_id = %(r)s AND task_id = %(t)s UNION ALL SELECT {cols} "
                                      "FROM task_instance WHERE dag_id = %(d)s AND run_id = %(r)s AND task_id = %(t)s",
                            {"d": DAG_ID, "r": run_id, "t": task_id}))


def _ranges(databases) -> dict[int, dict]:
    # bounds are stored as text (any key type); the demo's key is an integer
    rows = databases.query("legacy", f"SELECT range_no, status, key_lo::bigint, key_hi::bigint, last_key::bigint, "
                                     f"rows_read, rows_total FROM {SCHEMA}.backfill_ranges ORDER BY range_no")
    keys = ("range_no", "status", "key_lo", "key_hi", "last_key", "rows_read", "rows_total")
    return {r[0]: dict(zip(keys, r, strict=True)) for r in rows}


def _backend_pids(databases) -> set[int]:
    return {pid for (pid,) in databases.query("legacy", "SELECT pid FROM pg_stat_activity")}


def _backends_of(service, databases) -> set[int]:
    """The server PIDs of the legacy-database sessions a service's processes hold (matched by client port)."""
    import psutil

    ports = set()
    try:
        root = psutil.Process(service.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return set()
    for proc in procs:
        try:
            ports |= {c.laddr.port for c in proc.net_connections(kind="tcp")
                      if c.raddr and c.raddr.port == databases.cluster.port}
        except psutil.NoSuchProcess:
            continue
    rows = databases.query("legacy", "SELECT pid, client_port FROM pg_stat_activity WHERE datname = %s",
                           (databases.legacy_name,))
    found = {pid for pid, port in rows if port in ports}
    assert found, f"no legacy-database session of {service.name} (ports {sorted(ports)})"
    return found


def test_phase2_on_two_celery_workers_survives_a_killed_worker(celery_stack, databases, control_conn, fake_slack):
    stack = celery_stack
    api, services = stack.api, list(stack.services.values())
    add_listings(databases, 6_000)
    # healthy dual-write stats for the gates, reaching past the end of the test (future minutes are outside the window)
    write_stats(control_conn, end=datetime.now(UTC) + timedelta(minutes=20), minutes=100, attempts=1000,
                success_pct=99.5, p95_ms=35)

    wait_until(f"{DAG_ID} to be parsed", lambda: DAG_ID in api.dag_ids(), 180, services, interval=2)
    api.unpause(DAG_ID)
    # a cap for the whole backfill shared by the ranges (~150 rows/s each) and small batches: every range
    # lasts ~10 s and checkpoints often, so a worker can be killed mid-range
    run_id = api.trigger(DAG_ID, {"parallelism": RANGES, "batch_size": BATCH, "max_rows_per_second": 600})

    # both workers copy ranges; once one of worker-a's ranges is mid-way, worker-a is lost
    def victim():
        running = {m: h for m, _t, h, s in _tries(stack.meta_dsn, run_id, "backfill_range") if s == "running"}
        if set(running.values()) != set(WORKERS):
            return None
        progress = _ranges(databases)
        jobs = api.xcom(DAG_ID, run_id, "plan_backfill") or []
        for m, host in running.items():
            rng = progress.get(jobs[m]["range_no"]) if m < len(jobs) else None
            # mid-way: checkpointed past its start, several batches (~3 s at the cap) still to go
            if (host == "worker-a" and rng and rng["status"] == "running" and rng["key_lo"] < rng["last_key"]
                    and rng["rows_read"] + 4 * BATCH <= rng["rows_total"]):
                return m, jobs
        return None

    killed_map_index, jobs = wait_until("a range of worker-a to be mid-way", victim, 240, services, interval=0.3)
    backends = _backends_of(stack.services["worker-a"], databases)
    stack.services["worker-a"].kill()
    # a COMMIT the killed worker had already sent still lands: let its server sessions end, then read the checkpoints
    wait_until("the killed worker's sessions to end", lambda: not backends & _backend_pids(databases), 60,
          [s for s in services if s.name != "worker-a"], interval=0.2)
    at_kill = _ranges(databases)
    lost = {m for m, _t, h, s in _tries(stack.meta_dsn, run_id, "backfill_range") if h == "worker-a" and s == "running"}
    assert killed_map_index in lost

    survivors = [s for s in services if s.name != "worker-a"]

    def finished():
        state = api.run_state(DAG_ID, run_id)
        return state if state in ("success", "failed") else None

    state = wait_until("the run to finish", finished, 300, survivors, interval=2)
    tis = {(t["task_id"], t["map_index"]): t for t in api.task_instances(DAG_ID, run_id)}
    assert state == "success", {k: v["state"] for k, v in tis.items()}

    # the mapped ranges ran on both workers; the lost ones were detected and retried on the other worker
    tries = _tries(stack.meta_dsn, run_id, "backfill_range")
    assert len(jobs) == RANGES and {m for m, *_ in tries} == set(range(RANGES))
    assert {h for _m, t, h, _s in tries if t == 1} == set(WORKERS), tries
    for m in lost:
        mine = [(t, h, s) for mm, t, h, s in tries if mm == m]
        assert mine[0][:2] == (1, "worker-a") and mine[0][2] in ("failed", "up_for_retry"), mine
        assert mine[-1] == (2, "worker-b", "success"), mine
    heartbeat_events = query(stack.meta_dsn, "SELECT map_index FROM log WHERE event = 'heartbeat timeout' "
                                             "AND dag_id = %s AND run_id = %s", (DAG_ID, run_id))
    assert {m for (m,) in heartbeat_events} == lost, heartbeat_events

    # the retry resumed from the checkpoint the killed try had written, and copied only the rest
    victim = at_kill[jobs[killed_map_index]["range_no"]]
    assert victim["status"] == "running" and victim["rows_read"] > 0, at_kill
    ledger = databases.query("legacy", f"SELECT target, details, reason FROM {SCHEMA}.audit_ledger "
                                       "WHERE action = 'backfill_range_started' ORDER BY id")
    for m in lost:
        range_no = jobs[m]["range_no"]
        rng = at_kill[range_no]
        starts = [(d, r) for t, d, r in ledger if t == f"listings#{range_no}"]
        result = api.xcom(DAG_ID, run_id, "backfill_range", m)
        assert starts[0][0]["resume_from"] == rng["key_lo"] and starts[0][1] == "started", starts
        if rng["status"] == "done":  # killed while reporting a finished range: the retry finds it done
            assert len(starts) == 1 and result["rows_read"] == 0, (starts, result)
        elif rng["rows_read"] == 0:  # killed before its first checkpoint: the retry starts at the beginning
            assert len(starts) <= 2 and starts[-1][0]["resume_from"] == rng["key_lo"], starts
            assert result["rows_read"] == rng["rows_total"], (result, rng)
        else:
            assert len(starts) == 2, starts
            second, reason = starts[1]
            assert reason == "resumed from checkpoint" and second["resume_from"] == rng["last_key"] > rng["key_lo"]
            assert second["rows_done"] == rng["rows_read"] > 0
            assert result["rows_read"] == rng["rows_total"] - rng["rows_read"] > 0, (result, rng)
    final = _ranges(databases)
    assert all(r["status"] == "done" and r["rows_read"] == r["rows_total"] for r in final.values()), final

    # the gates waited in the triggerer (deferred, no worker slot): their trigger logs carry its job id
    (triggerer_job,) = query(stack.meta_dsn, "SELECT id FROM job WHERE job_type = 'TriggererJob'")[0]
    run_logs = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    for gate_task in ("dual_write_healthy", "dual_write_healthy_after_backfill"):
        assert tis[(gate_task, -1)]["state"] == "success"
        trigger_logs = list((run_logs / f"task_id={gate_task}").glob(f"attempt=*.log.trigger.{triggerer_job}.log"))
        assert trigger_logs, sorted(p.name for p in (run_logs / f"task_id={gate_task}").iterdir())
        text = "".join(p.read_text() for p in trigger_logs)
        assert "Trigger fired event" in text and GATE_PASSED.search(text), text[-2000:]
    rows = gate_rows(control_conn, "dual_write_health")
    assert {r[3]["task_id"] for r in rows} == {"dual_write_healthy", "dual_write_healthy_after_backfill"}
    assert all(r[1] == "passed" for r in rows), rows

    # nothing lost: every in-scope old row has exactly one equal new row, and the steps are verified
    c = compare(databases)
    assert c.equal and c.duplicates == 0 and c.new_rows == c.in_scope > 5000, c
    states = dict(databases.query("legacy", f"SELECT step_id, status FROM {SCHEMA}.step_state"))
    assert states == {"phase2.flag.dual_write_enabled": "verified", "phase2.backfill.listings": "verified"}, states

    # the broker and the result backend were the real ones: Celery's task results sit in the Postgres metadata DB
    (celery_results,) = query(stack.meta_dsn, "SELECT count(*) FROM celery_taskmeta")[0]
    assert celery_results > 0
    assert stack.redis.alive()
    with pytest.raises(ServiceError):
        stack.services["worker-a"].check_alive()
