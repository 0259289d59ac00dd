"""migration_phase3_data_migration: the seed's 004 consistency checks (Phase 3, step 3.1 / 3.2).

For every entity in the config (seed: ACTIVE `marketplace_listings` -> `marketplace.service_listings`):

- **counts on both sides** (in scope: old `status = 'ACTIVE'`, new `status = 'active'`),
- rows **in old but not in new**, rows **in new but not in old** (and in-scope new rows without a
  legacy id),
- **field-level differences** on the mapped columns (status map applied, `provider_id` compared
  through its lookup), naming the columns that differ,

and every **cross-database reference** (`marketplace.transactions.tenant_invoice_id` -> legacy
`invoices.id`; `contacts.marketplace_user_id` -> `marketplace.users.id`) and **count parity**
(transactions) in the config.

The two databases are separate, so nothing is joined across them: each server computes counts
and checksums of key-range chunks in SQL, differing ranges are bisected down to
`consistency.bisect_min_rows` rows, then only those rows are compared (one mapped task per check,
a thread pool over the chunks inside it), all of it one consistency-run step (plan / apply /
verify). Results: `migration_control.consistency_runs` /
`consistency_check_results` / `consistency_findings`; the task log lists counts and the first
offending keys. The run fails if anything differs.

**Params**: `dry_run` (log every check and the exact SQL it sends; write nothing: no run row, no
result). See docs/phase3-4-consistency.md.
"""

from __future__ import annotations

from airflow.sdk import Param

from migration_engine.airflow.consistency import consistency_chain
from migration_engine.airflow.dags import migration_dag


@migration_dag(
    "migration_phase3_data_migration",
    doc_md=__doc__,
    tags_=("phase3", "consistency"),
    params={
        "dry_run": Param(False, type="boolean", title="Dry run",
                         description="Log every check with the exact SQL it would send; write nothing."),
    },
)
def migration_phase3_data_migration():
    consistency_chain("diff", phase="phase3")


migration_phase3_data_migration()
