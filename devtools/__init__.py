"""Demo and development tooling: never shipped in the wheel or the image, never imported by the product.

Throwaway PostgreSQL clusters, the demo orchestration and its data, the application simulator, the
fake Slack Web API and the rehearsal driver. Their SQL lives in ``devtools/sql`` and is found by the
product's loader once this package is imported (``sqlfiles.add_sql_dir``).
"""

from __future__ import annotations

from pathlib import Path

from migration_engine import sqlfiles

ROOT = Path(__file__).resolve().parents[1]  # the checkout devtools runs from
SQL_DIR = Path(__file__).resolve().parent / "sql"

sqlfiles.add_sql_dir(SQL_DIR)
