"""What shapes the application's p95 under a paced copy: experiments behind bench/README.md "Pacing and peaks".

    SPECS='[{"name": "alone"}, {"name": "cap 7k", "cap": 7000},
            {"name": "cap 7k, 1 s bursts", "cap": 7000, "pace_slice": "60s"},
            {"name": "trough-only 40k", "cap": 40000, "oracle": true},
            {"name": "controller", "cap": 0, "budget": {"probe_allowance": "app_p95", "app_p95_ms": 12}}]' \\
    HEAVY=1 PERIOD=30 WINDOW=60 LISTINGS=3000000 .venv/bin/python bench/pacing_bench.py

Same cluster (default durability), seed and application process as backfill_bench.py; every spec is
one measurement of WINDOW seconds under the same load (``PEAK`` x the request rate and ``HEAVY``
sessions running backfill_bench.REPORT_SQL in the middle third of every ``PERIOD``). A spec is the
app alone (``"alone"``), ours at a fixed ``cap`` (any other key is a backfill setting override),
``"oracle": true`` = the same cap but the copy waits out every peak (it knows the load's clock: the
upper bound of what any controller could get from the troughs), or ``"budget"`` = the controller.
Prints rows/s and the p95 change overall, in the troughs and in the peaks (each against the same
phase alone), and the p99 change. It prints, it never asserts.
"""

from __future__ import annotations

import json
import logging
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import backfill_bench as bb  # noqa: E402

from migration_engine.config import load_config  # noqa: E402

LISTINGS = int(os.environ.get("LISTINGS", "3000000"))
WINDOW = float(os.environ.get("WINDOW", "60"))
PEAK = float(os.environ.get("PEAK", "3"))
PERIOD = float(os.environ.get("PERIOD", "30"))
HEAVY = int(os.environ.get("HEAVY", "1"))
log = bb.log


def p99(values):
    ordered = sorted(values)
    return ordered[max(0, int(0.99 * len(ordered)) - 1)]


def run_copy(cfg, legacy_dsn, new_dsn, app, seconds, cap, oracle=False, **overrides) -> float:
    """rows/s of ours for ``seconds`` at ``cap``; ``oracle``: every sleep also waits out the load's peak."""
    deadline = time.perf_counter() + seconds
    lo, hi = app.shape.peak_at

    def sleep(x: float) -> None:
        time.sleep(x)
        while oracle and lo <= (time.monotonic() - app.started) % app.shape.peak_period < hi \
                and time.perf_counter() < deadline:
            time.sleep(0.02)

    rows_per_s, _elapsed, _results = bb.ours(legacy_dsn, new_dsn, cfg, 2, max_rows_per_second=cap, seconds=seconds,
                                             sleep=sleep, **overrides)
    return rows_per_s


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    cfg = load_config()
    with bb.seeded_cluster(LISTINGS, prefix="zdm-pacing-") as seeded:
        legacy_dsn, new_dsn = seeded.legacy_dsn, seeded.new_dsn
        app = bb.AppProcess(legacy_dsn, new_dsn, 50.0)
        seeded.stack.callback(app.close)
        app.measure_for(2)
        app.set_shape(PEAK, PERIOD, HEAVY)
        log(f"load: {app.pattern()}")

        def measure(fn=None):
            return bb.under_load(app, new_dsn, fn or (lambda: time.sleep(WINDOW) or 0))

        _, base_t = measure()
        base = bb.ms(base_t)
        b_trough, b_peak = bb.split_phases(base_t, app)
        base_report = statistics.median(app.report_ms) if app.report_ms else None
        log(f"alone: p95 {bb.p95(base):.2f} ms (troughs {bb.p95(b_trough):.2f}, peaks {bb.p95(b_peak):.2f}); "
            f"reporting query median {base_report or 0:.0f} ms")

        def pct(a, b):
            return (a / b - 1) * 100

        for spec in json.loads(os.environ["SPECS"]):
            spec = dict(spec)
            name = spec.pop("name")
            if name == "alone":
                rows, lat_t = measure()
            else:
                cap, oracle = spec.pop("cap"), spec.pop("oracle", False)
                if "budget" in spec:
                    spec["throttle"] = {"budget": {"enabled": True, "max_latency_increase_pct": 20,
                                                   **spec.pop("budget")}}
                    spec["app_latency_window"] = 15
                rows, lat_t = measure(lambda cap=cap, oracle=oracle, spec=spec: run_copy(
                    cfg, legacy_dsn, new_dsn, app, WINDOW, cap, oracle=oracle, **spec))
            lat = bb.ms(lat_t)
            trough, peak = bb.split_phases(lat_t, app)
            report = statistics.median(app.report_ms) if app.report_ms and base_report else None
            log(f"{name:28s} {rows:>9,.0f} rows/s  p95 {pct(bb.p95(lat), bb.p95(base)):+5.0f} %  troughs "
                f"{pct(bb.p95(trough), bb.p95(b_trough)):+.0f} %  peaks {pct(bb.p95(peak), bb.p95(b_peak)):+.0f} %  "
                f"p99 {pct(p99(lat), p99(base)):+.0f} %"
                + (f"  reports {pct(report, base_report):+.0f} %" if report else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
