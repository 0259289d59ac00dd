"""`make demo` / `make demo-stop`: a local Airflow with this project's DAGs against seeded demo DBs.

No Docker: a project-local PostgreSQL cluster in .demo/pgdata holds the demo databases
(`breederhq`, `marketplace`) and Airflow's own metadata DB; `airflow standalone` runs the UI,
scheduler, triggerer and dag-processor; the application simulator writes live traffic and stats.
Everything started is recorded in .demo/*.pid so `down` stops exactly that.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from devtools import ROOT as PROJECT_ROOT
from devtools.pgcluster import STAT_STATEMENTS, PgCluster, PgClusterError

DEMO_DIR = Path(os.environ.get("DEMO_DIR", PROJECT_ROOT / ".demo"))
# Fixed ports below the kernel's ephemeral range (32768+), where a client socket could hold them.
PG_PORT = int(os.environ.get("DEMO_PG_PORT", "25432"))
AIRFLOW_PORT = int(os.environ.get("DEMO_AIRFLOW_PORT", "8080"))
LISTINGS = int(os.environ.get("DEMO_LISTINGS", "100000"))
TIME_SCALE = os.environ.get("DEMO_TIME_SCALE", "0.002")  # 48 h gate -> ~6 min, 4 h hold -> ~29 s
SIM_RATE = os.environ.get("DEMO_SIM_RATE", "20")
SLACK_PORT = os.environ.get("DEMO_SLACK_PORT", "28080")  # a local Slack sink: nothing leaves the machine


def _cluster() -> PgCluster:
    return PgCluster(DEMO_DIR / "pgdata", PG_PORT, settings=dict(STAT_STATEMENTS))


def airflow_env(cluster: PgCluster) -> dict[str, str]:
    """The environment Airflow (and its CLI) needs for the demo."""
    home = DEMO_DIR / "airflow"
    slack_url = f"http://127.0.0.1:{int(SLACK_PORT)}/api/"
    return {
        **os.environ,
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(PROJECT_ROOT / "dags"),
        "AIRFLOW__CORE__PLUGINS_FOLDER": str(PROJECT_ROOT / "plugins"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": cluster.dsn("airflow_meta").replace("postgresql://", "postgresql+psycopg2://"),
        "AIRFLOW__API__HOST": "127.0.0.1",
        "AIRFLOW__API__PORT": str(AIRFLOW_PORT),
        "AIRFLOW__API__BASE_URL": f"http://localhost:{AIRFLOW_PORT}",
        "AIRFLOW_CONN_BREEDERHQ_DB": cluster.dsn("breederhq"),
        "AIRFLOW_CONN_MARKETPLACE_DB": cluster.dsn("marketplace"),
        "AIRFLOW_CONN_SLACK_API_DEFAULT": json.dumps(
            {"conn_type": "slack", "password": "xoxb-demo", "extra": {"base_url": slack_url}}),
        "MIGRATION_TIME_SCALE": TIME_SCALE,
        "GX_ANALYTICS_ENABLED": "false",
        "PG_BINDIR": os.environ.get("PG_BINDIR") or str(cluster.bindir),
        "PYTHONPATH": os.pathsep.join(filter(None, [str(PROJECT_ROOT), os.environ.get("PYTHONPATH")])),
        # standalone starts its components as `airflow ...` from PATH: the venv's bin must come first
        "PATH": os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")]),
    }


def _pidfile(name: str) -> Path:
    return DEMO_DIR / f"{name}.pid"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except OSError:
        return False


def _running(name: str) -> int | None:
    p = _pidfile(name)
    if p.exists():
        pid = int(p.read_text().strip() or 0)
        if pid and _alive(pid):
            return pid
        p.unlink()
    return None


def _spawn(name: str, cmd: list[str], env: dict[str, str]) -> int:
    if (pid := _running(name)) is not None:
        print(f"{name} already running (pid {pid})")
        return pid
    log = open(DEMO_DIR / f"{name}.log", "ab")  # noqa: SIM115 - handed to the child
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            cwd=PROJECT_ROOT, start_new_session=True)
    _pidfile(name).write_text(str(proc.pid))
    print(f"started {name} (pid {proc.pid}, log {DEMO_DIR / (name + '.log')})")
    return proc.pid


def _stop(name: str, timeout: float = 30) -> None:
    pid = _running(name)
    if pid is None:
        return
    try:
        os.killpg(pid, signal.SIGTERM)  # the whole session: standalone's children too
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _alive(pid):
        time.sleep(0.3)
    if _alive(pid):
        os.killpg(pid, signal.SIGKILL)
    _pidfile(name).unlink(missing_ok=True)
    print(f"stopped {name}")


def _seed_databases(cluster: PgCluster) -> None:
    import psycopg2

    from devtools import demo_data
    from migration_engine import control, sqlfiles
    from migration_engine.config import load_config

    for name in ("breederhq", "marketplace", "airflow_meta"):
        cluster.create_database(name)
    conn = psycopg2.connect(cluster.dsn("breederhq"))
    with conn.cursor() as cur:
        sqlfiles.run(cur, "common/table_exists.sql",
                     params={"schema": "public", "table_name": "marketplace_listings"})
        seeded = cur.fetchone()[0]
    conn.commit()
    if not seeded:
        print(f"seeding demo databases with {LISTINGS} listings ...")
        counts = demo_data.build(cluster.dsn("breederhq"), cluster.dsn("marketplace"), listings=LISTINGS)
        print("seeded:", ", ".join(f"{k}={v}" for k, v in counts.items()))
    for name in ("breederhq", "marketplace"):  # a demo seeded before pg_stat_statements gets it too
        with psycopg2.connect(cluster.dsn(name)) as other:
            demo_data.install_stat_statements(other)
        other.close()
    cfg = load_config()
    control.ensure_control_schema(conn, cfg.control_schema, cfg.ddl)
    conn.close()


def _wait_http(url: str, timeout: float, watch: str) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and _running(watch) is not None:
        try:
            with urllib.request.urlopen(url, timeout=3) as resp:
                if resp.status == 200:
                    return True
        except Exception:  # noqa: BLE001 - not up yet
            pass
        time.sleep(1)
    return False


def up() -> int:
    DEMO_DIR.mkdir(parents=True, exist_ok=True)
    os.chmod(DEMO_DIR, 0o755)
    cluster = _cluster()
    cluster.start()
    print(f"postgres: {cluster.dsn()}")
    _seed_databases(cluster)
    env = airflow_env(cluster)
    py = sys.executable
    _spawn("slack", [py, "-m", "devtools.slack_sink", "--port", SLACK_PORT,
                     "--log", str(DEMO_DIR / "slack-messages.jsonl")], env)
    subprocess.run([py, "-m", "airflow", "db", "migrate"], env=env, check=True, stdout=subprocess.DEVNULL)
    _spawn("airflow", [py, "-m", "airflow", "standalone"], env)
    _spawn("simulator", [py, "-m", "devtools.simulator", "--legacy-dsn", cluster.dsn("breederhq"),
                         "--new-dsn", cluster.dsn("marketplace"), "--rate", SIM_RATE,
                         "--link-marketplace-invoices", "5"], env)
    url = f"http://localhost:{AIRFLOW_PORT}"
    if not _wait_http(f"http://127.0.0.1:{AIRFLOW_PORT}/api/v2/monitor/health", 180, "airflow"):
        print(f"Airflow did not come up on {url} (exited or no answer within 180 s); "
              f"see {DEMO_DIR / 'airflow.log'}", file=sys.stderr)
        return 1
    pw_file = DEMO_DIR / "airflow" / "simple_auth_manager_passwords.json.generated"
    creds = json.loads(pw_file.read_text()) if pw_file.exists() else {}
    print("\nDemo is up.")
    print(f"  Airflow UI : {url}")
    for user, password in creds.items():
        print(f"  login      : {user} / {password}   (from {pw_file})")
    print(f"  databases  : {cluster.dsn('breederhq')}  {cluster.dsn('marketplace')}")
    print(f"  Slack sink : messages the DAGs send are in {DEMO_DIR / 'slack-messages.jsonl'}")
    print(f"  time scale : {TIME_SCALE} (windows/holds compressed; MIGRATION_TIME_SCALE)")
    print("  stop with  : make demo-stop")
    return 0


def down() -> int:
    for name in ("simulator", "airflow", "slack"):
        _stop(name)
    try:
        _cluster().stop()
        print("stopped postgres")
    except PgClusterError as exc:
        print(f"postgres: {exc}", file=sys.stderr)
    return 0


def status() -> int:
    for name in ("slack", "airflow", "simulator"):
        pid = _running(name)
        print(f"{name:10s} {f'running (pid {pid})' if pid else 'stopped'}")
    print(f"{'postgres':10s} {'running' if _cluster().is_running() else 'stopped'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.demo")
    ap.add_argument("action", choices=["up", "down", "status"])
    args = ap.parse_args(argv)
    return {"up": up, "down": down, "status": status}[args.action]()


if __name__ == "__main__":
    sys.exit(main())
