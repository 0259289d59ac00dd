"""A Postgres that accepts only TLS: setup, backup, phase 1 and phase 3 run with ``sslmode=verify-full``.

The server has ``ssl=on`` and only ``hostssl`` lines in ``pg_hba.conf``; its certificate is signed by a
CA made here with ``openssl``. The Airflow connections carry ``sslmode=verify-full`` and
``sslrootcert`` as extras, so every client the DAGs start (psycopg2, ``pg_dump``/``pg_restore``,
Great Expectations' SQLAlchemy engine) must pass them on: one that dropped them would fall back to
libpq's default and could not verify the server. A wrong CA is refused, naming the connection.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import psycopg2
import pytest

from devtools import demo_data
from devtools.pgcluster import PgCluster, free_port
from tests.airflow_helpers import run_dag
from tests.consistency_fixtures import copy_listings, simulate_phase1, write_config
from tests.session import _SESSION_DIR, SeededDatabases

pytestmark = pytest.mark.timeout(600, method="thread")


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_ca(d: Path, name: str) -> Path:
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             "-days", "2", "-subj", f"/CN={name}", cwd=d)
    return d / f"{name}.crt"


@pytest.fixture(scope="module")
def tls_cluster():
    if not shutil.which("openssl"):
        pytest.fail("openssl is needed to make the test CA (apt-get install openssl)")
    d = Path(tempfile.mkdtemp(prefix="tls-", dir=_SESSION_DIR))
    os.chmod(d, 0o755)
    ca = _make_ca(d, "zdm-test-ca")
    wrong_ca = _make_ca(d, "some-other-ca")
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=d)
    (d / "san.ext").write_text("subjectAltName=IP:127.0.0.1\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", ca.name, "-CAkey", "zdm-test-ca.key", "-CAcreateserial",
             "-out", "server.crt", "-days", "2", "-extfile", "san.ext", cwd=d)
    os.chmod(d / "server.key", 0o600)
    if os.geteuid() == 0:  # the server runs as postgres and refuses a key others can read
        shutil.chown(d / "server.key", "postgres")
    cluster = PgCluster(d / "pgdata", free_port(), settings={
        "ssl": "on", "ssl_cert_file": str(d / "server.crt"), "ssl_key_file": str(d / "server.key")},
        hba=("hostssl all all 127.0.0.1/32 trust",))
    cluster.start()
    cluster.create_database("breederhq")
    cluster.create_database("marketplace")
    counts = demo_data.build(cluster.dsn("breederhq"), cluster.dsn("marketplace"), listings=300)
    yield cluster, ca, wrong_ca, counts
    cluster.destroy()


def _conn_uri(cluster: PgCluster, dbname: str, ca: Path) -> str:
    return f"{cluster.dsn(dbname)}?sslmode=verify-full&sslrootcert={ca}"


@pytest.fixture
def tls_databases(tls_cluster, monkeypatch, tmp_path):
    cluster, ca, _wrong, counts = tls_cluster
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", _conn_uri(cluster, "breederhq", ca))
    monkeypatch.setenv("AIRFLOW_CONN_MARKETPLACE_DB", _conn_uri(cluster, "marketplace", ca))
    config = write_config(tmp_path / "migration.yaml", data_docs_dir=str(tmp_path / "gx"))
    monkeypatch.setenv("MIGRATION_CONFIG", str(config))
    return SeededDatabases(cluster, "breederhq", "marketplace", counts)


def test_the_server_refuses_connections_without_tls(tls_cluster):
    cluster = tls_cluster[0]
    with pytest.raises(psycopg2.OperationalError, match="no encryption"):
        psycopg2.connect(cluster.dsn("breederhq") + "?sslmode=disable")


def test_setup_backup_phase1_phase3_run_over_verify_full(tls_databases, airflow_db, fake_slack, tmp_path):
    state, tasks = run_dag("migration_setup")
    assert state == "success", tasks

    backups = tmp_path / "backups"
    state, tasks = run_dag("migration_preflight_backup", {"backup_dir": str(backups)})
    assert state == "success", tasks  # pg_dump and the test restore connected with verify-full too
    (dump,) = backups.glob("*.dump")
    manifest = json.loads(Path(str(dump) + ".manifest.json").read_text())
    assert manifest["tables"]["public.marketplace_listings"] == tls_databases.counts["listings"]

    state, tasks = run_dag("migration_phase1_schema_prep")
    assert state == "success", tasks
    assert tls_databases.query("legacy", "SELECT count(*) FROM public.tenants "
                                         "WHERE marketplace_payment_mode IS NULL")[0][0] == 0

    simulate_phase1(tls_databases)  # what the application leaves behind (invoice links)
    copy_listings(tls_databases)
    state, tasks = run_dag("migration_phase3_data_migration")
    assert state == "success", tasks  # the diff on both sides and the GX suites, all over TLS
    assert not fake_slack.messages()



def test_a_wrong_ca_is_refused_naming_the_connection(tls_cluster, tls_databases, airflow_db, fake_slack,
                                                     monkeypatch, tmp_path):
    cluster, _ca, wrong_ca, _counts = tls_cluster
    monkeypatch.setenv("AIRFLOW_CONN_BREEDERHQ_DB", _conn_uri(cluster, "breederhq", wrong_ca))
    state, tasks = run_dag("migration_setup")
    assert state == "failed" and tasks["check_connections"] == "failed"
    text = json.dumps(fake_slack.messages())
    assert "breederhq_db" in text and "verify-full" in text and "certificate verify failed" in text
    # the backup's clients (psycopg2 and pg_dump through PGSSL* variables) refuse it as well
    state, tasks = run_dag("migration_preflight_backup", {"backup_dir": str(tmp_path / "backups")})
    assert state == "failed", tasks
    assert "certificate verify failed" in json.dumps(fake_slack.messages()[-1])
    assert not list((tmp_path / "backups").glob("*.dump"))
