"""`make demo`'s engine end to end: Postgres + seeded DBs + airflow standalone + simulator, then down."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import urllib.request

import psycopg2
import pytest

from devtools.pgcluster import free_port
from tests.session import _SESSION_DIR, ROOT


def _api(base: str, path: str, token: str | None = None, body: dict | None = None, method: str = "GET"):
    req = urllib.request.Request(base + path, method=method,
                                 data=json.dumps(body).encode() if body is not None else None)
    req.add_header("Content-Type", "application/json")
    if token:
        req.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(req, timeout=30) as resp:
        return json.loads(resp.read())


@pytest.mark.timeout(420)
def test_demo_up_lists_dags_seeds_data_and_runs_the_simulator():
    demo_dir = _SESSION_DIR / "demo"  # traversable by the postgres user (pytest's tmp_path is not)
    pg_port, af_port, slack_port = free_port(), free_port(), free_port()
    env = {**os.environ, "DEMO_DIR": str(demo_dir), "DEMO_PG_PORT": str(pg_port), "DEMO_AIRFLOW_PORT": str(af_port),
           "DEMO_SLACK_PORT": str(slack_port), "DEMO_LISTINGS": "3000", "DEMO_SIM_RATE": "30"}
    for key in [k for k in env if k.startswith(("AIRFLOW__", "AIRFLOW_CONN_", "AIRFLOW_HOME"))]:
        del env[key]  # the demo sets its own; the test session's must not leak in
    up = subprocess.run([sys.executable, "-m", "devtools.demo", "up"], env=env, cwd=ROOT,
                        capture_output=True, text=True, timeout=360)
    try:
        assert up.returncode == 0, up.stdout[-3000:] + up.stderr[-3000:]
        assert f"http://localhost:{af_port}" in up.stdout and "login" in up.stdout
        creds = json.loads((demo_dir / "airflow" / "simple_auth_manager_passwords.json.generated").read_text())
        user, password = next(iter(creds.items()))
        base = f"http://127.0.0.1:{af_port}"
        token = _api(base, "/auth/token", body={"username": user, "password": password}, method="POST")["access_token"]
        deadline = time.monotonic() + 120  # the dag-processor parses the folder after start-up
        while True:
            dags = {d["dag_id"] for d in _api(base, "/api/v2/dags?limit=100", token)["dags"]}
            if "migration_setup" in dags or time.monotonic() > deadline:
                break
            time.sleep(3)
        assert "migration_setup" in dags
        errors = _api(base, "/api/v2/importErrors", token)
        assert errors["total_entries"] == 0, errors
        conn = psycopg2.connect(f"postgresql://postgres@127.0.0.1:{pg_port}/breederhq")
        with conn.cursor() as cur:
            cur.execute("SELECT count(*) FROM public.marketplace_listings")
            assert cur.fetchone()[0] >= 3000
            deadline = time.monotonic() + 60
            while True:  # the simulator flushes path stats every few seconds
                cur.execute("SELECT coalesce(sum(requests), 0) FROM migration_control.path_stats")
                requests = cur.fetchone()[0]
                conn.commit()
                if requests > 0 or time.monotonic() > deadline:
                    break
                time.sleep(2)
        conn.close()
        assert requests > 0, "the simulator wrote no stats"
    finally:
        down = subprocess.run([sys.executable, "-m", "devtools.demo", "down"], env=env, cwd=ROOT,
                              capture_output=True, text=True, timeout=120)
        assert down.returncode == 0, down.stderr
    status = subprocess.run([sys.executable, "-m", "devtools.demo", "status"], env=env, cwd=ROOT,
                            capture_output=True, text=True, timeout=60)
    assert "running" not in status.stdout, status.stdout
