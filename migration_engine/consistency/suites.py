"""Great Expectations (GX Core 1.x) suites for phase 4 and the hourly run, and their Data Docs.

Suites (names are what the Data Docs show):

* ``<entity>_count_parity`` / ``<count_parity>_count_parity`` (e.g. ``listings_count_parity``,
  ``transactions_count_parity``) and ``<entity>_row_parity``, ``cross_db_reference_integrity``:
  these need two databases at once, and GX cannot join across servers. They validate the diff
  engine's result tables for this run instead (``consistency_check_results``: one row with the
  count measured on each side; ``consistency_findings``: the offending keys), so the Data Docs
  show the counts and the keys, and a check that failed to run (no result row, NULL counts, an
  ``error`` finding) fails its suite too.
* ``<value_check>_validity`` (``tenant_payment_mode_validity``, ``invoice_status_validity``): run by
  GX directly on the real table (``ExpectColumnValuesToBeInSet`` / ``ExpectColumnValuesToNotBeNull``)
  with the table's primary key as ``unexpected_index_column_names``, so the offending keys come
  back. A table or column that does not exist yet (``tenants.marketplace_payment_mode`` before
  phase 1) is not handed to GX: the suite is recorded as ``error`` with a message naming it.

GX is imported only here, inside functions (~6 s). The GX project is a file context in
``consistency.data_docs_dir`` (default ``<project>/gx``; ``uncommitted/`` holds validation results
and Data Docs). Connection strings are never written to it: ``great_expectations.yml`` says
``${ZDM_GX_LEGACY_URL}`` / ``${ZDM_GX_NEW_URL}``, filled from the Airflow connections at run time.
One GX run at a time per project directory (a file lock), since GX rewrites its YAML and JSON.
"""

from __future__ import annotations

import fcntl
import logging
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from psycopg2 import sql

from migration_engine import paths, sqlfiles
from migration_engine.config import MigrationConfig, TableRef
from migration_engine.consistency.plan import primary_key, require_columns
from migration_engine.consistency.results import CheckResult, ConsistencyError, Finding

log = logging.getLogger(__name__)

URL_ENV = {"legacy": "ZDM_GX_LEGACY_URL", "new": "ZDM_GX_NEW_URL"}
DATASOURCE = {"legacy": "zdm_legacy", "new": "zdm_new"}
DEFINITION_PREFIX = "zdm_"  # every checkpoint and validation definition this engine stores
CHECKPOINT_PREFIX = f"{DEFINITION_PREFIX}consistency"
ROW_PARITY_KINDS = ("missing_in_new", "missing_in_old", "changed", "unlinked_in_new", "error")


def gx_root(cfg: MigrationConfig) -> Path:
    return Path(cfg.consistency.data_docs_dir or paths.state_dir() / "gx").expanduser().resolve()


def _drop_stored_definitions(root: Path) -> None:
    """Remove this engine's stored checkpoints and validation definitions (``zdm_*``) before a run.

    They are rebuilt by every run (``add_or_update``), and a stale one cannot even be loaded or
    deleted through GX once its asset is gone from the re-created datasource - e.g. after an entity
    was renamed or another migration config used this GX project ("Could not find asset named
    'results_listings'"): every later run failed. Validation results and Data Docs (the history)
    stay; only the definitions go. Called under the project lock.
    """
    for store_dir in ("checkpoints", "validation_definitions"):
        for stored in (root / store_dir).glob(f"{DEFINITION_PREFIX}*.json"):
            stored.unlink()


def data_docs_index(cfg: MigrationConfig) -> Path:
    return gx_root(cfg) / "uncommitted" / "data_docs" / "local_site" / "index.html"


@dataclass
class SuiteSpec:
    """One suite and the batch it validates; plain data, so it is built and tested without GX."""

    name: str
    side: str  # legacy | new (which datasource)
    asset: str
    table: TableRef | None = None  # table asset, or
    query: str | None = None       # query asset
    expectations: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    index_column: str | None = None  # primary key, for unexpected_index_column_names
    kind_of: dict[int, str] = field(default_factory=dict)  # expectation position -> finding kind
    severity: str = "critical"
    error: str | None = None  # preflight failure: not run by GX, recorded as error
    description: str = ""


def suite_names(cfg: MigrationConfig) -> list[str]:
    """The suites a full run validates (what plan_suites builds), without touching a database."""
    names = []
    for ent in cfg.entities:
        names += [f"{ent}_count_parity", f"{ent}_row_parity"]
    names += [f"{cp.name}_count_parity" for cp in cfg.consistency.count_parity]
    if cfg.references:
        names.append("cross_db_reference_integrity")
    names += [f"{vc.name}_validity" for vc in cfg.value_checks]
    return names


def _render(cur, name: str, ids: dict | None = None, params: dict | None = None) -> str:
    """A file rendered to one line of SQL without its comments (GX stores and shows the query)."""
    text = sqlfiles.render(cur, name, ids, params)
    return " ".join(" ".join(ln for ln in text.splitlines() if not ln.strip().startswith("--")).split()).rstrip(";")


def plan_suites(cfg: MigrationConfig, run_pk: int, legacy_conn, new_conn) -> list[SuiteSpec]:
    """The suites of this config for one run (catalog look-ups only; no GX)."""
    schema = cfg.control_schema
    specs: list[SuiteSpec] = []
    with legacy_conn.cursor() as cur:
        def results_suite(check: str, what: str) -> SuiteSpec:
            query = _render(cur, "consistency/gx_results_asset.sql", {"schema": schema},
                            {"run_pk": run_pk, "check_name": check})
            return SuiteSpec(
                name=f"{check}_count_parity", side="legacy", asset=f"results_{check}", query=query,
                description=f"{what}: the count the diff engine measured on each database must match",
                expectations=[
                    ("ExpectTableRowCountToEqual", {"value": 1, "description": f"the {check} check ran in this run"}),
                    ("ExpectColumnValuesToNotBeNull", {"column": "old_count",
                                                       "description": "legacy-side count was measured"}),
                    ("ExpectColumnValuesToNotBeNull", {"column": "new_count",
                                                       "description": "new-side count was measured"}),
                    ("ExpectColumnPairValuesToBeEqual", {"column_A": "old_count", "column_B": "new_count",
                                                         "description": "legacy count == new count"}),
                ])

        def findings_suite(name: str, checks: list[str], kinds_by_check: dict[str, tuple[str, ...]],
                           description: str) -> SuiteSpec:
            query = _render(cur, "consistency/gx_findings_asset.sql", {"schema": schema},
                            {"run_pk": run_pk, "check_names": checks})
            exps = []
            for check, kinds in kinds_by_check.items():
                for kind in kinds:
                    unexpected = _render(cur, "consistency/gx_unexpected_findings.sql", {"batch": sql.SQL("{batch}")},
                                         {"check_name": check, "kinds": [kind]})
                    exps.append(("UnexpectedRowsExpectation", {
                        "unexpected_rows_query": unexpected,
                        "description": f"{check}: no {kind.replace('_', ' ')} rows"}))
            return SuiteSpec(name=name, side="legacy", asset=f"findings_{name}", query=query,
                             expectations=exps, description=description)

        for ent in cfg.entities:
            specs.append(results_suite(ent, f"entity {ent}"))
            specs.append(findings_suite(f"{ent}_row_parity", [ent], {ent: ROW_PARITY_KINDS},
                                        f"entity {ent}: rows missing on either side or with differing mapped columns"))
        for cp in cfg.consistency.count_parity:
            specs.append(results_suite(cp.name, f"count parity {cp.name}"))
        if cfg.references:
            refs = [r.name for r in cfg.references]
            specs.append(findings_suite("cross_db_reference_integrity", refs, {r: ("orphan", "error") for r in refs},
                                        "cross-database references: every reference must exist on the other side"))
    for vc in cfg.value_checks:
        conn = legacy_conn if vc.db == "legacy" else new_conn
        spec = SuiteSpec(name=f"{vc.name}_validity", side=vc.db, asset=f"table_{vc.name}", table=vc.table,
                         severity=vc.severity,
                         description=f"{vc.table}.{vc.column}: allowed {vc.allowed}, not null: {vc.not_null}")
        try:
            require_columns(conn, cfg, vc.db, vc.table, [vc.column])
            pk = primary_key(conn, vc.table)
            spec.index_column = pk[0][0] if len(pk) == 1 else None
        except ConsistencyError as exc:
            spec.error = f"suite {spec.name} cannot run: {exc}"
        finally:
            conn.rollback()
        if vc.allowed is not None:
            spec.kind_of[len(spec.expectations)] = "invalid_value"
            spec.expectations.append(("ExpectColumnValuesToBeInSet", {
                "column": vc.column, "value_set": list(vc.allowed),
                "description": f"{vc.column} is one of {', '.join(vc.allowed)}"}))
        if vc.not_null:
            spec.kind_of[len(spec.expectations)] = "null_value"
            spec.expectations.append(("ExpectColumnValuesToNotBeNull", {
                "column": vc.column, "description": f"{vc.column} is never NULL"}))
        if not spec.expectations:
            spec.error = f"value check {vc.name} has neither 'allowed' nor 'not_null'; nothing to validate"
        specs.append(spec)
    legacy_conn.commit()
    return specs


@contextmanager
def _project_lock(root: Path) -> Iterator[None]:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".zdm-gx.lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _import_gx():
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "false")
    import great_expectations as gx
    import great_expectations.expectations as gxe
    from great_expectations.checkpoint import UpdateDataDocsAction

    return gx, gxe, UpdateDataDocsAction


def _keys_from(result: dict, index_column: str | None) -> list[Any]:
    rows = result.get("partial_unexpected_index_list") or result.get("unexpected_index_list") or []
    if index_column:
        return [r.get(index_column) for r in rows if isinstance(r, dict)]
    return []


@dataclass
class SuitesOutcome:
    results: list[CheckResult]
    data_docs: str  # file path of the Data Docs index
    data_docs_url: str | None


def run_suites(cfg: MigrationConfig, specs: list[SuiteSpec], urls: dict[str, str], *, run_name: str) -> SuitesOutcome:
    """Validate every runnable suite with GX, build Data Docs; returns one CheckResult per suite."""
    root = gx_root(cfg)
    max_keys = cfg.consistency.max_reported_keys
    results: dict[str, CheckResult] = {}
    for spec in specs:
        if spec.error:
            results[spec.name] = CheckResult(spec.name, "suite", "error", counts={"error": 1}, message=spec.error,
                                             details={"severity": spec.severity})
    runnable = [s for s in specs if not s.error]
    started = time.monotonic()
    with _project_lock(root):
        gx, gxe, UpdateDataDocsAction = _import_gx()
        from great_expectations.core.run_identifier import RunIdentifier
        from great_expectations.data_context.types.base import ProgressBarsConfig

        for side, env in URL_ENV.items():
            os.environ[env] = urls[side]
        _drop_stored_definitions(root)
        ctx = gx.get_context(mode="file", context_root_dir=str(root))
        ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
        datasources = {side: ctx.data_sources.add_or_update_postgres(name=DATASOURCE[side],
                                                                      connection_string="${" + env + "}")
                       for side, env in URL_ENV.items() if any(s.side == side for s in runnable)}
        groups: dict[str | None, list] = {}
        for spec in runnable:
            ds = datasources[spec.side]
            if spec.table is not None:
                asset = ds.add_table_asset(name=spec.asset, table_name=spec.table.table,
                                           schema_name=spec.table.schema_name)
            else:
                asset = ds.add_query_asset(name=spec.asset, query=spec.query)
            batch = asset.add_batch_definition_whole_table("whole")
            suite = gx.ExpectationSuite(name=spec.name, meta={"notes": spec.description})
            for type_name, kwargs in spec.expectations:
                suite.add_expectation(getattr(gxe, type_name)(**kwargs))
            suite = ctx.suites.add_or_update(suite)
            vd = ctx.validation_definitions.add_or_update(
                gx.ValidationDefinition(name=f"{DEFINITION_PREFIX}{spec.name}", data=batch, suite=suite))
            groups.setdefault((spec.table is not None, spec.index_column), []).append(vd)
        by_name = {s.name: s for s in runnable}
        for (real_table, index_column), vds in groups.items():
            # Result-table suites: COMPLETE, so Data Docs list the offending keys (already capped at
            # max_stored_keys by the engine). Real tables: SUMMARY with the first max_keys keys only.
            result_format: dict[str, Any] = {"result_format": "COMPLETE"}
            if real_table:
                result_format = {"result_format": "SUMMARY", "partial_unexpected_count": max_keys}
                if index_column:
                    result_format["unexpected_index_column_names"] = [index_column]
            cp_name = f"{CHECKPOINT_PREFIX}_{'tables_' + (index_column or 'nokey') if real_table else 'results'}"
            checkpoint = ctx.checkpoints.add_or_update(gx.Checkpoint(
                name=cp_name, validation_definitions=vds, result_format=result_format,
                actions=[UpdateDataDocsAction(name="update_data_docs")]))
            outcome = checkpoint.run(run_id=RunIdentifier(run_name=run_name))
            for vr in outcome.run_results.values():
                spec = by_name[vr.suite_name]
                results[spec.name] = _to_check_result(spec, vr, max_keys)
        urls_out = ctx.get_docs_sites_urls()
    elapsed = time.monotonic() - started
    log.info("GX: %d suites validated in %.1fs", len(runnable), elapsed)
    index = data_docs_index(cfg)
    return SuitesOutcome(results=[results[s.name] for s in specs], data_docs=str(index),
                         data_docs_url=urls_out[0]["site_url"] if urls_out else None)


def _gx_error(info: Any) -> str | None:
    """The message of an expectation that raised (GX nests it per metric, or not)."""
    if not isinstance(info, dict):
        return None
    entries = [info] if "raised_exception" in info or "exception_message" in info else list(info.values())
    for entry in entries:
        if isinstance(entry, dict) and (entry.get("raised_exception") or entry.get("exception_message")):
            return str(entry.get("exception_message") or "unknown error")[:500]
    return None


def _to_check_result(spec: SuiteSpec, vr, max_keys: int) -> CheckResult:
    stats = vr.statistics or {}
    findings: list[Finding] = []
    failures: list[str] = []
    counts = {"evaluated": int(stats.get("evaluated_expectations", 0)),
              "unsuccessful": int(stats.get("unsuccessful_expectations", 0))}
    for pos, r in enumerate(vr.results):
        d = r.to_json_dict()
        if d.get("success"):
            continue
        cfgd = d.get("expectation_config") or {}
        desc = cfgd.get("description") or cfgd.get("type")
        res = d.get("result") or {}
        error = _gx_error(d.get("exception_info"))
        if error:
            failures.append(f"{desc}: GX could not evaluate it: {error}")
            continue
        kind = spec.kind_of.get(pos)
        if kind:
            n = int(res.get("unexpected_count") or 0)
            counts[kind] = counts.get(kind, 0) + n
            keys = _keys_from(res, spec.index_column)
            findings += [Finding(kind, k, (cfgd.get("kwargs", {}).get("column", ""),),
                                 {"table": str(spec.table)}) for k in keys]
            shown = ", ".join(str(k) for k in keys[:max_keys]) or ", ".join(
                repr(v) for v in (res.get("partial_unexpected_list") or [])[:max_keys])
            failures.append(f"{desc}: {n} unexpected ({spec.index_column or 'values'}: {shown})")
        elif "observed_value" in res and cfgd.get("type") == "unexpected_rows_expectation":
            rows = (res.get("details") or {}).get("unexpected_rows") or []
            keys = [str(r.get("entity_key")) for r in rows][:max_keys]
            failures.append(f"{desc}: {res.get('observed_value')} row(s), keys {', '.join(keys)}")
        else:
            observed = res.get("observed_value", res.get("partial_unexpected_list"))
            failures.append(f"{desc}: observed {observed}")
    status = "passed" if vr.success else "failed"
    message = f"suite {spec.name}: {counts['evaluated'] - counts['unsuccessful']}/{counts['evaluated']} passed"
    if failures:
        message += "; " + "; ".join(failures)
    return CheckResult(spec.name, "suite", status, counts=counts, findings=findings, message=message,
                       details={"severity": spec.severity, "asset": spec.asset})
