"""Helpers for the Slack approval tests: signed interactivity requests, a real Airflow API server
and a real scheduler as subprocesses sharing this test session's metadata DB (SQLite).

Why subprocesses: the acceptance criterion is the endpoint running *inside the Airflow API server*
(plugin loading, mounting under /slack, a separate process writing the same metadata DB that the
test's ``dag.test()`` loop reads). SQLite serialises writers; each side uses short transactions, so
the API server's answer and the ``dag.test()`` poll loop interleave (pysqlite's 5 s busy timeout
covers the brief lock waits).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from devtools.pgcluster import free_port
from devtools.services import Service
from migration_engine.approvals.signing import sign

ROOT = Path(__file__).resolve().parents[1]
TEST_DAGS = Path(__file__).parent / "dags_for_tests"
LOCAL_BUNDLE = "airflow.dag_processing.bundles.local.LocalDagBundle"


def bundle_config_env() -> str:
    """dags-folder plus tests/dags_for_tests (same bundle name as tests/unit/test_alerts.py uses)."""
    return json.dumps([
        {"name": "dags-folder", "classpath": LOCAL_BUNDLE, "kwargs": {}},
        {"name": "alerts-test-dags", "classpath": LOCAL_BUNDLE, "kwargs": {"path": str(TEST_DAGS)}},
    ])


# --- signed requests -----------------------------------------------------------------------
def block_actions(*, user_id: str, value: str, action_id: str = "migration_approval_approve",
                  channel_id: str = "CFAKE0001", message_ts: str = "1.000001", response_url: str | None = None,
                  blocks: list | None = None, user_name: str = "") -> dict[str, Any]:
    """A Slack ``block_actions`` payload for a click on one of our buttons (shape as Slack sends it)."""
    return {
        "type": "block_actions",
        "user": {"id": user_id, "username": user_name or user_id.lower(), "name": user_name or user_id.lower(),
                 "team_id": "TFAKE"},
        "api_app_id": "AFAKE", "token": "legacy-verification-token-unused", "trigger_id": "1.2.3",
        "team": {"id": "TFAKE", "domain": "fake"},
        "container": {"type": "message", "message_ts": message_ts, "channel_id": channel_id, "is_ephemeral": False},
        "channel": {"id": channel_id, "name": "migration"},
        "message": {"type": "message", "ts": message_ts, "text": "approval", "blocks": blocks or []},
        "response_url": response_url,
        "actions": [{"action_id": action_id, "block_id": "migration_approval_actions", "value": value,
                     "type": "button", "action_ts": str(time.time())}],
    }


def form_body(payload: dict | str) -> bytes:
    raw = payload if isinstance(payload, str) else json.dumps(payload)
    return urlencode({"payload": raw}).encode()


def signed_headers(body: bytes, secret: str, *, timestamp: int | None = None) -> dict[str, str]:
    ts = int(time.time()) if timestamp is None else timestamp
    return {"Content-Type": "application/x-www-form-urlencoded", "X-Slack-Request-Timestamp": str(ts),
            "X-Slack-Signature": sign(body, secret, ts)}


def post(url: str, body: bytes, headers: dict[str, str], timeout: float = 30) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=body, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


# --- Airflow processes ---------------------------------------------------------------------
class AirflowProcess(Service):
    """``airflow <args>`` as a subprocess with its output in a log file; stopped with SIGTERM
    (its process group and every descendant: devtools/services.py)."""

    def __init__(self, args: list[str], env: dict[str, str], log_path: Path):
        super().__init__(f"airflow {args[0]}", [sys.executable, "-m", "airflow", *args], env, log_path)
        self.args = args


class ApiServer(AirflowProcess):
    """``airflow api-server`` on 127.0.0.1 with the simple auth manager's ``users`` ({name: role}),
    each with a random password, so a test can log in as any of them (``token(name)``)."""

    def __init__(self, env: dict[str, str], log_path: Path, users: dict[str, str] | None = None):
        import secrets

        self.port = free_port()
        self.users = users or {"admin": "admin"}
        self.passwords = {name: secrets.token_urlsafe(12) for name in self.users}
        pw_file = log_path.with_name(log_path.stem + ".passwords.json")
        pw_file.write_text(json.dumps(self.passwords))
        env = {**env,
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": ",".join(f"{u}:{r}" for u, r in self.users.items()),
               "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(pw_file),
               "AIRFLOW__API_AUTH__JWT_SECRET": secrets.token_urlsafe(24),
               "AIRFLOW__API__BASE_URL": f"http://127.0.0.1:{self.port}"}
        super().__init__(["api-server", "--host", "127.0.0.1", "--port", str(self.port), "--workers", "1"],
                         env, log_path)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def wait_ready(self, path: str = "/api/v2/monitor/health", timeout: float = 120) -> dict:
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if not self.alive():
                raise RuntimeError(f"api-server exited ({self.proc.returncode}):\n{self.output()[-4000:]}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=5) as resp:
                    return json.loads(resp.read())
            except Exception as exc:  # noqa: BLE001 - not up yet
                last = exc
            time.sleep(0.5)
        raise RuntimeError(f"api-server not ready within {timeout}s ({last}):\n{self.output()[-4000:]}")

    def token(self, user: str) -> str:
        status, body = self.call("POST", "/auth/token", {"username": user, "password": self.passwords[user]})
        assert status in (200, 201), (status, body)
        return body["access_token"]

    def call(self, method: str, path: str, body: Any = None, token: str | None = None,
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """One request; (status, JSON body or text)."""
        data = json.dumps(body).encode() if body is not None else None
        hdrs = {"Content-Type": "application/json", **(headers or {})}
        if token:
            hdrs["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.url + path, data=data, headers=hdrs, method=method)
        try:
            with urllib.request.urlopen(req, timeout=30) as resp:
                status, raw = resp.status, resp.read()
        except urllib.error.HTTPError as exc:
            status, raw = exc.code, exc.read()
        try:
            return status, json.loads(raw or b"{}")
        except ValueError:
            return status, raw.decode(errors="replace")

    def group_rss_bytes(self) -> int:
        """Resident memory of every process of the server's process group (uvicorn workers included)."""
        total = 0
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
                if int(fields[2]) != self.proc.pid:  # field 5 (pgrp): start_new_session made pid the group
                    continue
                total += int(fields[21]) * os.sysconf("SC_PAGE_SIZE")  # field 24: rss in pages
            except (OSError, IndexError, ValueError):
                continue
        return total


def in_thread(fn, *args, **kwargs) -> tuple[threading.Thread, dict]:
    """Run ``fn`` in a daemon thread; the returned dict gets ``result`` or ``error``."""
    box: dict = {}

    def run():
        try:
            box["result"] = fn(*args, **kwargs)
        except BaseException as exc:  # noqa: BLE001 - handed to the test
            box["error"] = exc

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, box


# --- config and control DB -----------------------------------------------------------------
APPROVER = "UAPPROVER1"  # may answer write_cutover; Airflow user APPROVER_AIRFLOW
INTRUDER = "UINTRUDER9"  # may answer phase1_rollback only (issue 14's measured attack); Airflow: INTRUDER_AIRFLOW
APPROVER_AIRFLOW, INTRUDER_AIRFLOW = "approver1", "intruder9"
TEST_APPROVERS = {
    "default": [],
    "write_cutover": [{"slack": APPROVER, "airflow": APPROVER_AIRFLOW, "name": "Approver One"}],
    "phase1_rollback": [{"slack": INTRUDER, "airflow": INTRUDER_AIRFLOW}],
}
WARN_CHANNEL, CRIT_CHANNEL, APPROVAL_CHANNEL = "#zdm-warn", "#zdm-crit", "#zdm-approvals"
ONCALL = "<!subteam^S0ONCALL>"
AIRFLOW_BASE_URL = "http://airflow.test:8080"


def write_config(path: Path, *, approvers: dict[str, list] | None = None) -> Path:
    """The default migration config with test Slack channels and approvers."""
    import yaml

    from migration_engine.config import DEFAULT_CONFIG_PATH

    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    data["slack"] = {"warning_channel": WARN_CHANNEL, "critical_channel": CRIT_CHANNEL, "oncall_mention": ONCALL,
                     "airflow_base_url": AIRFLOW_BASE_URL}
    data["approvals"] = {"approvers": TEST_APPROVERS if approvers is None else approvers,
                         "response_timeout": "10m", "channel": APPROVAL_CHANNEL}
    path.write_text(yaml.safe_dump(data))
    return path


def control_database(pg_cluster, name: str) -> str:
    """A fresh database with the control schema; returns its DSN."""
    import psycopg2

    from migration_engine.control import ensure_control_schema

    pg_cluster.create_database(name, drop_existing=True)
    dsn = pg_cluster.dsn(name)
    conn = psycopg2.connect(dsn)
    try:
        ensure_control_schema(conn, "migration_control")
    finally:
        conn.close()
    return dsn


def query(dsn: str, text: str, params=None) -> list[tuple]:
    import psycopg2

    conn = psycopg2.connect(dsn)
    try:
        with conn.cursor() as cur:
            cur.execute(text, params)
            return cur.fetchall()
    finally:
        conn.close()
