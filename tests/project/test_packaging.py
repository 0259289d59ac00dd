"""The wheel is the product: every module, all product SQL, the DAGs and the default config; no dev tooling.

Installed with ``--no-deps`` into a directory outside the checkout (next to a view of this venv's
third-party packages without the editable install of the checkout), the 16 DAG files parse with zero
import errors and the plugins load from the installed package, with no checkout path on sys.path.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DIST_NAME = "zero_downtime_migration"


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("dist")
    proc = subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(out), str(ROOT)],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    (whl,) = out.glob("*.whl")
    return whl


def test_dependencies_are_the_runtime_pins():
    requirements = (ROOT / "requirements.txt").read_text().split("# tests and checks", 1)[0]
    pins = [line.split("#", 1)[0].strip() for line in requirements.splitlines()]
    pins = sorted(p for p in pins if p)
    deps = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    assert deps == pins


def test_wheel_holds_the_product_and_nothing_else(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    modules = {p.relative_to(ROOT).as_posix() for p in (ROOT / "migration_engine").rglob("*.py")
               if "__pycache__" not in p.parts}
    assert len(modules) > 80 and not modules - names, sorted(modules - names)
    sql = {"migration_engine/sql/" + p.relative_to(ROOT / "include" / "sql").as_posix()
           for p in (ROOT / "include" / "sql").rglob("*.sql")}
    assert sql and not sql - names, sorted(sql - names)
    dags = {"migration_engine/dags/" + p.name for p in (ROOT / "dags").glob("*.py")}
    assert len(dags) == 16 and not dags - names, sorted(dags - names)
    assert "migration_engine/defaults/migration.yaml" in names
    tops = {n.split("/", 1)[0] for n in names}
    assert tops == {"migration_engine", f"{DIST_NAME}-0.2.0.dist-info"}, tops  # no devtools, tests, bench
    assert not [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
    entry_points = zipfile.ZipFile(wheel).read(f"{DIST_NAME}-0.2.0.dist-info/entry_points.txt").decode()
    assert "[airflow.plugins]" in entry_points and "zdm-backfill" in entry_points


_PROBE = r"""
import json, site, sys
site.addsitedir(sys.argv[1])
checkout = sys.argv[2]
from airflow.dag_processing.dagbag import DagBag
import migration_engine
from migration_engine import paths
bag = DagBag(dag_folder=str(paths.dags_folder()))
from airflow import plugins_manager
plugins, plugin_errors = plugins_manager._get_plugins()
ours = {p.name: sys.modules[type(p).__module__].__file__ for p in plugins if p.name.startswith("migration_")}
leaks = sorted(n for n, m in list(sys.modules.items()) if checkout in (getattr(m, "__file__", None) or ""))
print(json.dumps({
    "package": migration_engine.__file__, "dags": sorted(bag.dag_ids), "import_errors": bag.import_errors,
    "plugins": ours, "plugin_errors": plugin_errors, "checkout_on_path": [p for p in sys.path if checkout in p],
    "modules_from_checkout": leaks, "devtools": "devtools" in sys.modules,
}))
"""


def test_installed_wheel_parses_every_dag_and_loads_the_plugins(wheel, tmp_path):
    site_dir = tmp_path / "site-packages"
    site_dir.mkdir()
    # this venv minus the editable install of the checkout (its .pth, dist-info and the data files
    # hatchling's editable build copies to site-packages/migration_engine)
    ours = re.compile(rf"^((_editable_impl_)?{DIST_NAME}[-.]|migration_engine$)", re.IGNORECASE)
    for entry in Path(sysconfig.get_paths()["purelib"]).iterdir():
        if not ours.match(entry.name):
            (site_dir / entry.name).symlink_to(entry)
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(site_dir),
                           str(wheel)], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    plugins_dir = tmp_path / "plugins"
    plugins_dir.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MIGRATION_CONFIG")}
    env |= {"AIRFLOW__CORE__PLUGINS_FOLDER": str(plugins_dir), "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-S", "-c", _PROBE, str(site_dir), str(ROOT)], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-4000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["package"].startswith(str(site_dir)), out["package"]
    assert out["import_errors"] == {}, out["import_errors"]
    assert len(out["dags"]) == 16 and all(d.startswith("migration_") for d in out["dags"]), out["dags"]
    assert set(out["plugins"]) == {"migration_dashboard", "migration_slack_interactivity"}, out
    assert all(f.startswith(str(site_dir)) for f in out["plugins"].values()), out["plugins"]
    assert out["plugin_errors"] == {}, out["plugin_errors"]
    assert out["checkout_on_path"] == [] and out["modules_from_checkout"] == [] and not out["devtools"], out
