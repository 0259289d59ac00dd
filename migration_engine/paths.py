"""Where the product's files are, from a checkout or from an installed wheel.

Why one module: the wheel carries the top-level ``include/sql``, ``include/migration.yaml`` and
``dags/`` inside the package (``migration_engine/sql``, ``…/defaults``, ``…/dags``, see
pyproject.toml), while a checkout keeps them at the top level. Everything that opens one of these
files asks here, so both layouts work and nothing guesses from ``__file__`` on its own.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
_PARENT = PACKAGE_DIR.parent
# A source checkout (or an editable install of one): the top-level folders sit next to the package.
CHECKOUT_ROOT: Path | None = _PARENT if (_PARENT / "include" / "sql").is_dir() else None


def _installed_or_checkout(installed: Path, checkout_rel: str) -> Path:
    if installed.exists():
        return installed
    if CHECKOUT_ROOT is not None:
        return CHECKOUT_ROOT / checkout_rel
    return installed  # neither: callers report the missing path


def sql_dir() -> Path:
    """The product's SQL files."""
    return _installed_or_checkout(PACKAGE_DIR / "sql", "include/sql")


def default_config_path() -> Path:
    """The shipped default migration config (the seed's marketplace migration)."""
    return _installed_or_checkout(PACKAGE_DIR / "defaults" / "migration.yaml", "include/migration.yaml")


def dags_folder() -> Path:
    """The DAG files, for Airflow's ``[core] dags_folder`` (``zdm-paths dags`` prints it)."""
    return _installed_or_checkout(PACKAGE_DIR / "dags", "dags")


def state_dir() -> Path:
    """Where the product writes files of its own (Data Docs): ``$MIGRATION_STATE_DIR``, else the
    checkout, else ``$AIRFLOW_HOME`` - never inside site-packages."""
    if os.environ.get("MIGRATION_STATE_DIR"):
        return Path(os.environ["MIGRATION_STATE_DIR"]).expanduser()
    if CHECKOUT_ROOT is not None:
        return CHECKOUT_ROOT
    return Path(os.environ.get("AIRFLOW_HOME", "~/airflow")).expanduser()


def main(argv: list[str] | None = None) -> int:
    """``zdm-paths {dags|sql|config}``: print a path (e.g. for ``AIRFLOW__CORE__DAGS_FOLDER``)."""
    import argparse

    parser = argparse.ArgumentParser(prog="zdm-paths", description=main.__doc__)
    parser.add_argument("what", choices=["dags", "sql", "config"])
    args = parser.parse_args(argv)
    print({"dags": dags_folder, "sql": sql_dir, "config": default_config_path}[args.what]())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
