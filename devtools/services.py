"""Local services for end-to-end tests: a command in its own process group, Redis, Airflow components.

Each service is started in a new session (its own process group), so ``stop()`` (SIGTERM, then
SIGKILL) and ``kill()`` (SIGKILL at once: a lost machine) reach exactly what it started and nothing
else on the machine: the group (uvicorn workers, Celery's prefork pool) and every descendant by PID -
Airflow's task supervisor puts each task process in a process group of its own, so a signal to the
worker's group alone would leave a running task behind, still writing. Output goes to a log file
the test can read and attach to a failure.

``hostname`` is a ``[core] hostname_callable`` for several Airflow workers on one machine: each
process names itself from ``ZDM_HOSTNAME`` (falling back to the FQDN, Airflow's default), so the
task instances say which worker ran them.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

from devtools import ROOT

HOSTNAME_ENV = "ZDM_HOSTNAME"


def hostname() -> str:
    """``[core] hostname_callable``: this process's name from ``ZDM_HOSTNAME``, else the FQDN."""
    return os.environ.get(HOSTNAME_ENV) or socket.getfqdn()


class ServiceError(RuntimeError):
    """A service did not start or exited; the message carries the tail of its log."""


class Service:
    """``cmd`` as a subprocess in its own process group, stdout+stderr in ``log_path``."""

    def __init__(self, name: str, cmd: list[str], env: dict[str, str], log_path: Path, *, cwd: Path = ROOT):
        self.name, self.cmd, self.env, self.log_path, self.cwd = name, cmd, env, Path(log_path), cwd
        self.proc: subprocess.Popen | None = None
        self._log = None

    def start(self) -> Service:
        if self.alive():
            return self
        self._log = open(self.log_path, "ab")  # noqa: SIM115 - closed in stop()/kill()
        self.proc = subprocess.Popen(self.cmd, env=self.env, cwd=str(self.cwd), stdout=self._log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        return self

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def output(self, tail: int | None = None) -> str:
        text = self.log_path.read_text(errors="replace") if self.log_path.exists() else ""
        return text[-tail:] if tail else text

    def check_alive(self) -> None:
        """Raise with the log's tail when the service has exited."""
        if self.proc is not None and self.proc.poll() is not None:
            raise ServiceError(f"{self.name} exited with {self.proc.returncode}:\n{self.output(4000)}")

    def _signal_group(self, sig: int) -> None:
        try:
            os.killpg(self.proc.pid, sig)  # the group we started: only our own processes
        except ProcessLookupError:
            pass

    def descendants(self) -> list:
        """Every process below the one we started (psutil objects; remembers their start times)."""
        import psutil

        try:
            return psutil.Process(self.proc.pid).children(recursive=True)
        except psutil.NoSuchProcess:
            return []

    @staticmethod
    def _kill_each(procs: list) -> None:
        import psutil

        for proc in procs:
            try:
                proc.kill()  # psutil checks the PID still names the same process (start time)
            except psutil.NoSuchProcess:
                pass
        psutil.wait_procs(procs, timeout=10)

    def kill(self) -> None:
        """SIGKILL the group and every descendant at once, as if the machine were lost: no shutdown
        handler runs, no task process survives its worker."""
        if self.proc is None:
            return
        procs = self.descendants()
        self._signal_group(signal.SIGKILL)
        self._kill_each(procs)
        self.proc.wait(30)
        self._close_log()

    def stop(self, timeout: float = 20) -> None:
        if self.proc is None:
            return
        procs = self.descendants()
        if self.proc.poll() is None:
            self._signal_group(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self._signal_group(signal.SIGKILL)
                self.proc.wait(10)
        # what outlived the leader (a task process in its own group, a pool worker) goes too
        self._signal_group(signal.SIGKILL)
        self._kill_each(procs)
        self._close_log()

    def _close_log(self) -> None:
        if self._log is not None:
            self._log.close()
            self._log = None


def stop_all(services: list[Service], timeout: float = 20) -> None:
    """Stop several services at once (each one's graceful shutdown runs in parallel)."""
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=max(1, len(services))) as pool:
        list(pool.map(lambda service: service.stop(timeout), services))


def airflow(name: str, args: list[str], env: dict[str, str], log_dir: Path) -> Service:
    """``airflow <args>`` with this interpreter (the venv's Airflow)."""
    return Service(name, [sys.executable, "-m", "airflow", *args], env, Path(log_dir) / f"{name}.log")


def redis_server_binary() -> str | None:
    """Debian's ``redis-server`` (``make test`` installs it where it may: root + apt), or None."""
    return os.environ.get("REDIS_SERVER") or shutil.which("redis-server")


class Redis(Service):
    """A throwaway Redis on 127.0.0.1: no persistence, no daemonizing (so the PID is the server's)."""

    def __init__(self, port: int, workdir: Path, binary: str | None = None):
        binary = binary or redis_server_binary()
        if binary is None:
            raise ServiceError("redis-server not found (Debian: apt-get install redis-server; or set REDIS_SERVER)")
        workdir = Path(workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        self.port = port
        super().__init__("redis", [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--daemonize", "no", "--dir", str(workdir)],
                         dict(os.environ), workdir / "redis.log", cwd=workdir)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def ping(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=2) as sock:
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def wait_ready(self, timeout: float = 20) -> Redis:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.check_alive()
            if self.ping():
                return self
            time.sleep(0.1)
        raise ServiceError(f"redis on port {self.port} did not answer PING within {timeout}s:\n{self.output(2000)}")
