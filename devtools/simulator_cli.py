"""Run the application simulator as load: a paced create/update/read mix, flushed periodically.

Why a separate process: the demo starts it in the background so the dashboards and gates see live
traffic while the DAGs flip flags; it must survive database hiccups (errors are counted, not fatal)
and stop cleanly on SIGTERM (final flush, exit 0).

    python -m devtools.simulator --legacy-dsn postgresql://... --new-dsn postgresql://... \
        [--config include/migration.yaml] [--rate 20] [--duration 0] [--dual-write-failure-rate 0.02]
"""

from __future__ import annotations

import argparse
import logging
import random
import signal
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import psycopg2

from devtools.simulator import (
    Faults,
    ListingNotFoundError,
    ListingRef,
    MaintenanceModeError,
    MarketplaceApp,
)
from migration_engine import control as control_mod
from migration_engine.appclient import ControlClient
from migration_engine.config import ConfigError, load_config

log = logging.getLogger("devtools.simulator")

KINDS = ("create", "update", "read", "checkout")


@dataclass(frozen=True)
class Mix:
    """Relative weights of the request kinds."""

    create: float = 1
    update: float = 2
    read: float = 7
    checkout: float = 0  # an invoice transition + a payment (the seed's invoice/payment alerts)

    def __post_init__(self) -> None:
        weights = [self.create, self.update, self.read, self.checkout]
        if min(weights) < 0 or sum(weights) <= 0:
            raise ValueError(f"mix weights must be >= 0 and not all 0, got {weights}")

    @classmethod
    def parse(cls, text: str) -> Mix:
        """``create=1,update=2,read=7``"""
        try:
            parts = dict(p.split("=", 1) for p in text.split(",") if p.strip())
            weights = {k.strip(): float(v) for k, v in parts.items()}
        except ValueError:
            raise ValueError(f"mix must look like create=1,update=2,read=7, got {text!r}") from None
        unknown = set(weights) - set(KINDS)
        if unknown:
            raise ValueError(f"unknown request kind(s) {sorted(unknown)} in mix; use {KINDS}")
        return cls(**{k: weights.get(k, 0.0) for k in KINDS})

    def pick(self, rng: random.Random) -> str:
        return rng.choices(KINDS, weights=[self.create, self.update, self.read, self.checkout])[0]


@dataclass
class RunStats:
    requests: Counter = field(default_factory=Counter)   # kind -> attempted
    errors: Counter = field(default_factory=Counter)     # kind -> raised (not maintenance refusals)
    refused: int = 0                                     # writes refused by maintenance_mode
    elapsed_s: float = 0.0


class Workload:
    """Marketplace traffic: known listings to read/update, tenants to create listings for.

    Another entity's traffic subclasses it and overrides ``sample_column`` (an old column whose
    recent values new rows reuse, e.g. a foreign key), ``create_values`` and ``update_values``
    (old-column values); ``run(..., workload=MyWorkload)`` sends it (examples/library/traffic.py).
    """

    sample_column = "tenant_id"

    def __init__(self, app: MarketplaceApp, rng: random.Random, pool_size: int = 2000) -> None:
        self.app = app
        self.rng = rng
        self.pool_size = pool_size
        self.pool: list[ListingRef] = []
        self.samples: list[Any] = []
        self.loaded = False
        self.n = 0

    def load(self) -> None:
        self.pool = self.app.sample_refs(self.pool_size)
        self.samples = self.app.sample_values(self.sample_column, 200)
        self.loaded = True

    def _remember(self, ref: ListingRef, index: int | None = None) -> None:
        if index is not None:
            self.pool[index] = ref
        elif len(self.pool) < self.pool_size:
            self.pool.append(ref)
        else:
            self.pool[self.rng.randrange(len(self.pool))] = ref

    def create_values(self) -> dict[str, Any]:
        """Old-column values of a new row (``self.samples``: recent values of ``sample_column``)."""
        return {"tenant_id": self.rng.choice(self.samples), "title": f"Simulated listing {self.n}",
                "description": f"Created by the simulator (request {self.n})",
                "price_cents": self.rng.randint(1000, 200_000), "status": "ACTIVE"}

    def update_values(self) -> dict[str, Any]:
        """Old-column values an update changes (touched columns such as updated_at are added)."""
        return {"title": f"Edited listing {self.n}", "price_cents": self.rng.randint(1000, 200_000)}

    def step(self, kind: str) -> None:
        if not self.loaded:
            self.load()
        self.n += 1
        if kind == "create" or not self.pool:
            if not self.samples:
                raise RuntimeError(f"no {self.sample_column} values found to create rows with")
            self._remember(self.app.create(self.create_values()))
        elif kind == "update":
            i = self.rng.randrange(len(self.pool))
            self._remember(self.app.update(self.pool[i], self.update_values()), i)
        elif kind == "checkout":
            self.app.checkout(self.rng.choice(self.pool))
        else:
            self.app.get_listing(self.rng.choice(self.pool))


def _flush(control: ControlClient) -> None:
    try:
        control.flush()
    except Exception as exc:  # noqa: BLE001 - stats are kept and retried on the next flush
        log.warning("stats flush failed (kept for the next one): %s", exc)


def run(app: MarketplaceApp, *, duration_s: float, rate_per_s: float, mix: Mix | None = None,
        stop: threading.Event | None = None, flush_every_s: float = 2.0, report_every_s: float = 30.0,
        rng: random.Random | None = None, pool_size: int = 2000,
        workload: type[Workload] = Workload) -> RunStats:
    """Send ``rate_per_s`` requests per second for ``duration_s`` seconds (0: until ``stop`` is set)."""
    if rate_per_s <= 0:
        raise ValueError("rate_per_s must be > 0")
    mix = mix or Mix()
    stop = stop or threading.Event()
    rng = rng or random.Random()
    work = workload(app, rng, pool_size)
    stats = RunStats()
    interval = 1.0 / rate_per_s
    start = time.monotonic()
    next_at = last_flush = last_report = start
    while not stop.is_set():
        now = time.monotonic()
        if duration_s and now - start >= duration_s:
            break
        if now - last_flush >= flush_every_s:
            _flush(app.control)
            last_flush = now
        if now - last_report >= report_every_s:
            log.info("requests %s, errors %s, refused %d", dict(stats.requests), dict(stats.errors), stats.refused)
            last_report = now
        if now < next_at:
            stop.wait(min(next_at - now, flush_every_s))
            continue
        next_at = max(next_at + interval, now - 1.0)  # catch up at most one second of backlog
        kind = mix.pick(rng)
        stats.requests[kind] += 1
        try:
            work.step(kind)
        except MaintenanceModeError:
            stats.refused += 1
        except Exception as exc:  # noqa: BLE001 - a load generator keeps going; errors are counted
            stats.errors[kind] += 1
            level = logging.DEBUG if isinstance(exc, ListingNotFoundError) else logging.WARNING
            if sum(stats.errors.values()) <= 20 or sum(stats.errors.values()) % 100 == 0:
                log.log(level, "%s failed: %s", kind, exc)
    _flush(app.control)
    stats.elapsed_s = time.monotonic() - start
    return stats


def _connector(dsn: str, *, statement_timeout_ms: int = 10_000) -> Callable[[], Any]:
    def connect():
        return psycopg2.connect(dsn, application_name="marketplace-simulator", connect_timeout=10,
                                options=f"-c statement_timeout={statement_timeout_ms}")
    return connect


def _ensure_control_schema(connect: Callable[[], Any], schema: str, stop: threading.Event,
                           timeout_s: float) -> None:
    """The demo may start us while Postgres is still coming up: retry for ``timeout_s``."""
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            conn = connect()
            try:
                control_mod.ensure_control_schema(conn, schema)
            finally:
                conn.close()
            return
        except psycopg2.OperationalError as exc:
            if time.monotonic() >= deadline or stop.is_set():
                raise
            log.info("waiting for the legacy database: %s", str(exc).strip())
            stop.wait(1.0)


def _invoice_linker(legacy: Callable[[], Any], new: Callable[[], Any], every_s: float,
                    stop: threading.Event) -> threading.Thread:
    """Background thread: the demo application's invoice bookkeeping (demo_data.link_marketplace_invoices)."""
    from devtools.demo_data import link_marketplace_invoices

    def loop() -> None:
        reported = None
        while not stop.wait(every_s):
            try:
                legacy_conn, new_conn = legacy(), new()
                try:
                    changed = link_marketplace_invoices(legacy_conn, new_conn)
                finally:
                    legacy_conn.close()
                    new_conn.close()
            except Exception as exc:  # noqa: BLE001 - the next round tries again
                log.warning("linking marketplace invoices failed: %s", exc)
                continue
            if changed and changed != reported:
                log.info("flagged %d invoice(s) behind marketplace transactions", changed)
            reported = changed

    thread = threading.Thread(target=loop, name="invoice-linker", daemon=True)
    thread.start()
    return thread


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m devtools.simulator",
                                 description="Marketplace application simulator (honours the migration flags).")
    ap.add_argument("--legacy-dsn", required=True, help="legacy database (also holds the control schema)")
    ap.add_argument("--new-dsn", help="new database (default: the legacy DSN, i.e. same-database mode)")
    ap.add_argument("--config", help="migration config (default: $MIGRATION_CONFIG or include/migration.yaml)")
    ap.add_argument("--entity", default="listings")
    ap.add_argument("--rate", type=float, default=20.0, help="requests per second")
    ap.add_argument("--duration", type=float, default=0.0, help="seconds to run; 0 = until SIGTERM")
    ap.add_argument("--mix", type=Mix.parse, default=Mix(), help="weights, e.g. create=1,update=2,read=7")
    ap.add_argument("--dual-write-failure-rate", type=float, default=0.0)
    ap.add_argument("--new-read-error-rate", type=float, default=0.0)
    ap.add_argument("--field-mismatch-rate", type=float, default=0.0)
    ap.add_argument("--new-latency-ms", type=float, default=0.0, help="extra latency on new-table reads")
    ap.add_argument("--flush-interval", type=float, default=2.0, help="seconds between stats flushes")
    ap.add_argument("--flag-ttl", type=float, default=2.0, help="seconds feature flags are cached")
    ap.add_argument("--instance", help="instance name in the stats tables (default: hostname)")
    ap.add_argument("--seed", type=int, help="random seed (reproducible routing and faults)")
    ap.add_argument("--startup-timeout", type=float, default=30.0)
    ap.add_argument("--link-marketplace-invoices", type=float, default=0.0, metavar="SECONDS",
                    help="demo application only: every SECONDS, flag the legacy invoice behind each marketplace "
                         "transaction once phase 1 added the columns (0 = off); see demo_data")
    ap.add_argument("--log-level", default="INFO")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        cfg = load_config(args.config)
        if args.entity not in cfg.entities:
            raise ConfigError(f"entity {args.entity!r} is not in the config; known: {sorted(cfg.entities)}")
        faults = Faults(dual_write_failure_rate=args.dual_write_failure_rate,
                        new_read_error_rate=args.new_read_error_rate,
                        field_mismatch_rate=args.field_mismatch_rate,
                        new_path_latency_ms=args.new_latency_ms)
    except (ConfigError, ValueError) as exc:
        log.error("%s", exc)
        return 2
    legacy = _connector(args.legacy_dsn)
    new = _connector(args.new_dsn or args.legacy_dsn)
    try:
        _ensure_control_schema(legacy, cfg.control_schema, stop, args.startup_timeout)
    except psycopg2.Error as exc:
        log.error("cannot prepare the control schema in the legacy database: %s", str(exc).strip())
        return 1
    rng = random.Random(args.seed)
    control = ControlClient(legacy, cfg.control_schema, instance=args.instance, flag_ttl=args.flag_ttl)
    app = MarketplaceApp(legacy, new, cfg, entity_name=args.entity, control=control, faults=faults,
                         rng=random.Random(rng.random()))
    if args.link_marketplace_invoices > 0:
        _invoice_linker(legacy, new, args.link_marketplace_invoices, stop)
    log.info("simulating %s at %.1f req/s (%s), faults %s", args.entity, args.rate,
             f"{args.duration:g}s" if args.duration else "until SIGTERM", faults)
    try:
        stats = run(app, duration_s=args.duration, rate_per_s=args.rate, mix=args.mix, stop=stop,
                    flush_every_s=args.flush_interval, rng=rng)
    finally:
        app.close()
        try:
            control.close()
        except Exception as exc:  # noqa: BLE001 - exiting anyway; say what was lost
            log.warning("final stats flush failed: %s", exc)
    log.info("stopped after %.1fs: requests %s, errors %s, refused %d", stats.elapsed_s,
             dict(stats.requests), dict(stats.errors), stats.refused)
    return 0


if __name__ == "__main__":
    sys.exit(main())
