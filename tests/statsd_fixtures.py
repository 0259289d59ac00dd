"""A real StatsD listener on 127.0.0.1 (UDP) and Airflow's metrics pointed at it: the metrics tests see
exactly the packets a StatsD server / Prometheus statsd-exporter would get."""

from __future__ import annotations

import socket
import threading
import time

import pytest


class StatsdListener:
    """A StatsD server in miniature: collects every ``name:value|type`` line it receives."""

    def __init__(self):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.lines: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                data, _ = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            self.lines += data.decode().splitlines()

    def gauges(self, settle: float = 1.0) -> dict[str, float]:
        """name -> last value of every gauge received (waits until no packet came for ``settle`` s)."""
        seen = -1
        while seen != len(self.lines):
            seen = len(self.lines)
            time.sleep(settle)
        out = {}
        for line in self.lines:
            name, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if kind.startswith("g"):
                out[name] = float(value)
        return out

    def series(self, name: str, settle: float = 1.0) -> list[float]:
        """Every value gauge ``name`` took, in the order received (one per emission)."""
        self.gauges(settle)
        out = []
        for line in self.lines:
            got, _, rest = line.partition(":")
            value, _, kind = rest.partition("|")
            if got == name and kind.startswith("g"):
                out.append(float(value))
        return out

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=2)
        self.sock.close()


@pytest.fixture
def statsd(monkeypatch):
    """Airflow metrics on, pointed at the listener; the stats client set up as the task runner does."""
    from airflow.sdk.observability import stats
    from airflow.sdk.observability.metrics import stats_utils

    import migration_engine.airflow  # noqa: F401 - loading the layer installs the engine's emitter

    listener = StatsdListener()
    for key, value in {"STATSD_ON": "True", "STATSD_HOST": "127.0.0.1", "STATSD_PORT": str(listener.port),
                       "STATSD_PREFIX": "airflow"}.items():
        monkeypatch.setenv(f"AIRFLOW__METRICS__{key}", value)
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    yield listener
    monkeypatch.setenv("AIRFLOW__METRICS__STATSD_ON", "False")
    stats.initialize(factory=stats_utils.get_stats_factory(), export_legacy_names=False)
    listener.close()
