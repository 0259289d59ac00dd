"""Real Airflow services for end-to-end tests: the ``airflow_stack`` fixture and its helpers.

A stack is Airflow's metadata DB (a database in this session's PostgreSQL cluster, never SQLite),
an ``AIRFLOW_HOME`` and a log directory under the test's tmp dir, and Airflow components started as
processes in their own groups (``devtools.services``): ``stack.start(name, args)`` starts one,
``stack.restart(name)`` starts a new process of a component that was stopped or killed (its log
continues in the same file). ``stack.wait(what, check, timeout)`` polls and fails with every live
service's log; a service that dies on its own fails the wait at once. At teardown every service is
stopped and the logs (processes, tasks, triggers) are kept under the artifacts dir.

    stack = airflow_stack("airflow_x", executor="LocalExecutor", config=path, env={...})
    stack.migrate()
    stack.start_core()            # api-server, scheduler, triggerer, dag-processor; stack.api logged in
    stack.services["triggerer"].kill(); stack.restart("triggerer")
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
from pathlib import Path

import pytest

from devtools.pgcluster import free_port
from devtools.rehearsal import Airflow
from devtools.services import Service, airflow, stop_all
from tests.slack_fixtures import query


def wait_until(what: str, check, timeout: float, services, interval: float = 0.5):
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


def health(port: int) -> dict | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/v2/monitor/health", timeout=3) as resp:
            return json.loads(resp.read())
    except Exception:  # noqa: BLE001 - not up yet
        return None


def admin_password(home: Path) -> str | None:
    path = home / "simple_auth_manager_passwords.json.generated"
    try:
        return json.loads(path.read_text()).get("admin")
    except (OSError, ValueError):
        return None


class AirflowStack:
    """One metadata DB + AIRFLOW_HOME + the Airflow processes started on them (see the module doc)."""

    def __init__(self, pg_cluster, tmp_path: Path, db_name: str, *, executor: str, config: Path,
                 env: dict[str, str] | None = None) -> None:
        self.name = db_name
        self.home = tmp_path / "airflow"
        self.logs = tmp_path / "logs"
        self.home.mkdir()
        self.logs.mkdir()
        pg_cluster.create_database(db_name, drop_existing=True)
        self.meta_dsn = pg_cluster.dsn(db_name)
        self.sqla = self.meta_dsn.replace("postgresql://", "postgresql+psycopg2://", 1)
        self.api_port = free_port()
        self.env = {
            **os.environ,  # the session's dags folder, PYTHONPATH, test connections, fake Slack
            "AIRFLOW_HOME": str(self.home),
            "MIGRATION_CONFIG": str(config),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": self.sqla,
            "AIRFLOW__CORE__EXECUTOR": executor,
            "AIRFLOW__CORE__HOSTNAME_CALLABLE": "devtools.services.hostname",
            "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{self.api_port}/execution/",
            "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "True",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": "admin:admin",
            "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(32),  # one secret for every component
            "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.api_port}",
            "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "2",
            "AIRFLOW__DAG_PROCESSOR__MIN_FILE_PROCESS_INTERVAL": "600",  # parse once: 2 shared cores
            "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "600",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
            **(env or {}),
        }
        self.env.pop("AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST", None)  # only the project's dags folder
        self.services: dict[str, Service] = {}
        self._args: dict[str, tuple[list[str], dict[str, str]]] = {}
        self.api: Airflow | None = None
        self._closed = False
        self._down: set[str] = set()

    # -- processes ---------------------------------------------------------------------------------
    def migrate(self) -> None:
        proc = subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], env=self.env, capture_output=True,
                              text=True, timeout=300)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    def start(self, name: str, args: list[str], env: dict[str, str] | None = None) -> Service:
        """Start ``airflow <args>`` as the component ``name`` (extra ``env`` on top of the stack's)."""
        assert name not in self.services or not self.services[name].alive(), f"{name} is already running"
        self._args[name] = (list(args), {**self.env, **(env or {})})
        service = airflow(name, *self._args[name], self.logs).start()
        self.services[name] = service
        return service

    def restart(self, name: str) -> Service:
        """A new process of a component that was stopped or killed; its log continues in the same file."""
        args, env = self._args[name]
        old = self.services[name]
        assert not old.alive(), f"{name} (pid {old.pid}) is still running"
        service = airflow(name, args, env, self.logs).start()
        self.services[name] = service
        self._down.discard(name)
        return service

    def start_core(self) -> Airflow:
        """api-server, scheduler, triggerer and dag-processor; waits until the API answers and logs in."""
        self.start("api-server", ["api-server", "--host", "127.0.0.1", "--port", str(self.api_port),
                                  "--workers", "1"])
        self.start("scheduler", ["scheduler"])
        self.start("triggerer", ["triggerer", "--skip-serve-logs"])
        self.start("dag-processor", ["dag-processor"])
        self.wait("the api-server", lambda: health(self.api_port), 180)
        creds = self.wait("the generated admin password", lambda: admin_password(self.home), 60)
        self.api = Airflow(f"http://127.0.0.1:{self.api_port}", "admin", creds)
        return self.api

    def kill(self, name: str) -> None:
        """SIGKILL a component and everything below it (a lost machine); ``wait`` no longer checks it."""
        self.services[name].kill()
        self._down.add(name)

    def stop(self, name: str, timeout: float = 20) -> None:
        """SIGTERM (then SIGKILL) a component: a graceful shutdown; ``wait`` no longer checks it."""
        self.services[name].stop(timeout)
        self._down.add(name)

    def alive(self) -> list[Service]:
        """The services meant to be running (one killed or stopped on purpose is not checked by ``wait``)."""
        return [s for name, s in self.services.items() if name not in self._down]

    def wait(self, what: str, check, timeout: float, interval: float = 0.5):
        return wait_until(what, check, timeout, self.alive(), interval)

    def query(self, text: str, params=None) -> list[tuple]:
        return query(self.meta_dsn, text, params)

    # -- teardown ----------------------------------------------------------------------------------
    def close(self, artifacts_dir: Path) -> None:
        """Stop every service (idempotent) and keep the logs under ``artifacts_dir/<db name>-e2e-logs``."""
        if self._closed:
            return
        self._closed = True
        stop_all(list(self.services.values()))
        kept = artifacts_dir / f"{self.name.removeprefix('airflow_')}-e2e-logs"
        shutil.rmtree(kept, ignore_errors=True)
        shutil.copytree(self.logs, kept)
        if (self.home / "logs").is_dir():
            shutil.copytree(self.home / "logs", kept / "tasks")


@pytest.fixture
def airflow_stack(pg_cluster, tmp_path, artifacts_dir):
    """A factory: ``airflow_stack(db_name, executor=..., config=..., env=...)`` -> an :class:`AirflowStack`
    (it copies os.environ when called: request ``databases`` and ``fake_slack`` first, for their connections);
    every stack it made is stopped (logs kept) at teardown."""
    stacks: list[AirflowStack] = []

    def make(db_name: str, *, executor: str, config: Path, env: dict[str, str] | None = None) -> AirflowStack:
        stack = AirflowStack(pg_cluster, tmp_path, db_name, executor=executor, config=config, env=env)
        stacks.append(stack)
        return stack

    try:
        yield make
    finally:
        for stack in stacks:
            stack.close(artifacts_dir)
