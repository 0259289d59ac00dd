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

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import psycopg2
import pytest

from devtools.pgcluster import free_port
from devtools.rehearsal import Airflow
from devtools.services import HOSTNAME_ENV, Redis, ServiceError, airflow, redis_server_binary, stop_all
from tests.backfill_fixtures import add_listings, compare
from tests.gate_fixtures import SCHEMA, gate_rows, write_stats

DAG_ID = "migration_phase2_dual_write"
WORKERS = ("worker-a", "worker-b")
RANGES = 4
BATCH = 100
HEARTBEAT_TIMEOUT = 20  # seconds; the default is 300 (docs/deployment.md says why and what to set)
pytestmark = pytest.mark.timeout(480)


def _meta(dsn: str, text: str, params=None) -> list[tuple]:
    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(text, params)
            return cur.fetchall()
    finally:
        conn.close()


def _wait(what: str, check, timeout: float, services, interval: float = 0.5):
    """Poll ``check`` until it returns something truthy; a dead service or the timeout fails with its log."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for service in services:
            service.check_alive()
        result = check()
        if result:
            return result
        time.sleep(interval)
    tails = "\n".join(f"--- {s.name} ---\n{s.output(2500)}" for s in services)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{tails}")


@pytest.fixture
def celery_stack(pg_cluster, databases, fake_slack, tmp_path, artifacts_dir):
    if redis_server_binary() is None:
        pytest.skip("redis-server is not installed (make test installs Debian's redis-server as root with apt)")
    home = tmp_path / "airflow"
    logs = tmp_path / "logs"
    home.mkdir()
    logs.mkdir()
    pg_cluster.create_database("airflow_celery", drop_existing=True)
    meta_dsn = pg_cluster.dsn("airflow_celery")
    sqla = meta_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
    redis = Redis(free_port(), tmp_path / "redis")
    config = _config(tmp_path / "migration.yaml")
    api_port = free_port()
    env = {
        **os.environ,  # the session's dags folder, MIGRATION_CONFIG, PYTHONPATH, test connections, fake Slack
        "AIRFLOW_HOME": str(home),
        "MIGRATION_CONFIG": str(config),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": sqla,
        "AIRFLOW__CORE__EXECUTOR": "CeleryExecutor",
        "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.services.hostname",
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{api_port}/execution/",
        "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
        "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
        "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # one secret for every component
        "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{api_port}",
        "AIRFLOW__CELERY__BROKER_URL": redis.url,
        "AIRFLOW__CELERY__RESULT_BACKEND": f"db+{sqla}",
        "AIRFLOW__CELERY__WORKER_CONCURRENCY": "2",
        # as in docker-compose.yaml: longer than any task runs, so Redis never hands a running task to a
        # second worker; a lost worker is the scheduler's heartbeat timeout's job
        "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "86400",
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": str(HEARTBEAT_TIMEOUT),
        "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "2",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
        "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",  # parse once: 2 shared cores
        "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
        "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
    }
    env.pop("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", None)  # only the project's dags folder
    services = []
    try:
        redis.start()
        services.append(redis)
        redis.wait_ready()
        migrate = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=env, capture_output=True,
                                 text=True, timeout=300)
        assert migrate.returncode == 0, migrate.stdout[-3000:] + migrate.stderr[-3000:]
        api = airflow("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(api_port), "--workers", "1"],
                      env, logs)
        components = [
            api,
            airflow("scheduler", ["scheduler"], env, logs),
            airflow("triggerer", ["triggerer", "--skip-serve-logs"], env, logs),
            airflow("dag-processor", ["dag-processor"], env, logs),
        ] + [
            airflow(name, ["celery", "worker", "--celery-hostname", name, "--concurrency", "2", "--skip-serve-logs",
                           "--pid", str(tmp_path / f"{name}.pid")], {**env, HOSTNAME_ENV: name}, logs)
            for name in WORKERS
        ]
        for service in components:
            service.start()
            services.append(service)
        _wait("the api-server", lambda: _health(api_port), 180, services)
        for name in WORKERS:
            worker = next(s for s in services if s.name == name)
            _wait(f"{name} to join", lambda w=worker: f"{w.name} ready." in w.output(), 180, services)
        creds = _wait("the generated admin password", lambda: _password(home), 60, services)
        yield SimpleNamespace(api=Airflow(f"http://127.0.0.1:{api_port}", "admin", creds), meta_dsn=meta_dsn,
                              services={s.name: s for s in services}, redis=redis, env=env, logs=logs,
                              home=home)
    finally:
        stop_all([s for s in services if s is not redis])
        redis.stop()
        # kept after every run (tmp dirs rotate): what each process, task and trigger said
        kept = artifacts_dir / "celery-e2e-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(logs, kept)
        if (home / "logs").is_dir():
            shutil.copytree(home / "logs", kept / "tasks")


def _config(path: Path) -> Path:
    """The default config with the batch size held at BATCH (not adapted upward): a range then lasts
    rows / cap seconds and checkpoints every batch, so it can be interrupted mid-way."""
    import yaml

    from migration_engine.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["backfill"].update(batch_size=BATCH, min_batch_size=BATCH, max_batch_size=BATCH)
    path.write_text(yaml.safe_dump(data))
    return path


def _health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - not up yet
        return None


def _password(home: Path) -> str | None:
    path = home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


def _tries(meta_dsn: str, run_id: str, task_id: str) -> list[tuple]:
    """Every try of a task (map_index, try_number, hostname, state): history plus the current one."""
    cols = "map_index, try_number, hostname, state"
    return sorted(_meta(meta_dsn, f"SELECT {cols} FROM task_instance_history WHERE dag_id = %(d)s AND run_id = %(r)s "
                                  f"AND task_id = %(t)s UNION ALL SELECT {cols} FROM task_instance "
                                  "WHERE dag_id = %(d)s AND run_id = %(r)s AND task_id = %(t)s",
                        {"d": DAG_ID, "r": run_id, "t": task_id}))


def _ranges(databases) -> dict[int, dict]:
    rows = databases.query("legacy", f"SELECT range_no, status, key_lo, key_hi, last_key, rows_read, rows_total "
                                     f"FROM {SCHEMA}.backfill_ranges ORDER BY range_no")
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

    _wait(f"{DAG_ID} to be parsed", lambda: DAG_ID in api.dag_ids(), 180, services, interval=2)
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

    killed_map_index, jobs = _wait("a range of worker-a to be mid-way", victim, 240, services, interval=0.3)
    backends = _backends_of(stack.services["worker-a"], databases)
    stack.services["worker-a"].kill()
    # a COMMIT the killed worker had already sent still lands: let its server sessions end, then read the checkpoints
    _wait("the killed worker's sessions to end", lambda: not backends & _backend_pids(databases), 60,
          [s for s in services if s.name != "worker-a"], interval=0.2)
    at_kill = _ranges(databases)
    lost = {m for m, _t, h, s in _tries(stack.meta_dsn, run_id, "backfill_range") if h == "worker-a" and s == "running"}
    assert killed_map_index in lost

    survivors = [s for s in services if s.name != "worker-a"]

    def finished():
        state = api.run_state(DAG_ID, run_id)
        return state if state in ("success", "failed") else None

    state = _wait("the run to finish", finished, 300, survivors, interval=2)
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
    heartbeat_events = _meta(stack.meta_dsn, "SELECT map_index FROM log WHERE event = 'heartbeat timeout' "
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
    (triggerer_job,) = _meta(stack.meta_dsn, "SELECT id FROM job WHERE job_type = 'TriggererJob'")[0]
    run_logs = stack.home / "logs" / f"dag_id={DAG_ID}" / f"run_id={run_id}"
    for gate_task in ("dual_write_healthy", "dual_write_healthy_after_backfill"):
        assert tis[(gate_task, -1)]["state"] == "success"
        trigger_logs = list((run_logs / f"task_id={gate_task}").glob(f"attempt=*.log.trigger.{triggerer_job}.log"))
        assert trigger_logs, sorted(p.name for p in (run_logs / f"task_id={gate_task}").iterdir())
        text = "".join(p.read_text() for p in trigger_logs)
        assert "Trigger fired event" in text and "gate dual_write_health: passed" in text, text[-2000:]
    rows = gate_rows(control_conn, "dual_write_health")
    assert {r[3]["task_id"] for r in rows} == {"dual_write_healthy", "dual_write_healthy_after_backfill"}
    assert all(r[1] == "passed" for r in rows), rows

    # nothing lost: every in-scope old row has exactly one equal new row, and the steps are verified
    c = compare(databases)
    assert c.equal and c.duplicates == 0 and c.new_rows == c.in_scope > 5000, c
    states = dict(databases.query("legacy", f"SELECT step_id, status FROM {SCHEMA}.step_state"))
    assert states == {"phase2.flag.dual_write_enabled": "verified", "phase2.backfill.listings": "verified"}, states

    # the broker and the result backend were the real ones: Celery's task results sit in the Postgres metadata DB
    (celery_results,) = _meta(stack.meta_dsn, "SELECT count(*) FROM celery_taskmeta")[0]
    assert celery_results > 0
    assert stack.redis.alive()
    with pytest.raises(ServiceError):
        stack.services["worker-a"].check_alive()
