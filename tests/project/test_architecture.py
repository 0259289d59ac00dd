"""The layering rules of docs/architecture.md, checked on the source (every import, also inside functions).

* Only ``migration_engine/airflow/`` imports Airflow (DAG files, tests and devtools may too).
* No module outside the layer imports the layer: the engine runs without Airflow.
* The product never imports ``devtools`` (dev tooling is not in the wheel).
* No import cycle between the top-level parts of the package (subpackages and modules).
* DAG files are thin: no try/except, no prints, no alerts, no database access, and only
  ``airflow.sdk``/``migration_engine.airflow`` at top level.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PKG = ROOT / "migration_engine"
LAYER = PKG / "airflow"


def _imports(path: Path) -> list[tuple[str, int]]:
    """(absolute module name, line) of every import in the file."""
    tree = ast.parse(path.read_text(), str(path))
    parts = path.relative_to(ROOT).with_suffix("").parts
    package = parts[:-1] if parts[-1] != "__init__" else parts[:-1]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(a.name, node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - node.level + 1]
                mod = ".".join([*base, node.module] if node.module else base)
            else:
                mod = node.module or ""
            out.append((mod, node.lineno))
            out += [(f"{mod}.{a.name}", node.lineno) for a in node.names]  # `from pkg import module`
    return out


def _product_files() -> list[Path]:
    return [p for p in PKG.rglob("*.py") if "__pycache__" not in p.parts]


def test_only_the_airflow_layer_imports_airflow():
    offenders = [f"{p.relative_to(ROOT)}:{line} imports {mod}" for p in _product_files()
                 if LAYER not in p.parents for mod, line in _imports(p)
                 if mod == "airflow" or mod.startswith("airflow.")]
    assert not offenders, "\n".join(sorted(set(offenders)))


def test_the_engine_never_imports_the_layer_or_devtools():
    offenders = []
    for p in _product_files():
        for mod, line in _imports(p):
            if LAYER not in p.parents and mod.startswith("migration_engine.airflow"):
                offenders.append(f"{p.relative_to(ROOT)}:{line} imports the Airflow layer ({mod})")
            if mod == "devtools" or mod.startswith("devtools."):
                offenders.append(f"{p.relative_to(ROOT)}:{line} imports dev tooling ({mod})")
    assert not offenders, "\n".join(sorted(set(offenders)))


def _part(module: str) -> str | None:
    bits = module.split(".")
    if bits[0] != "migration_engine" or len(bits) < 2:
        return None
    return bits[1]


def _existing_parts() -> set[str]:
    return {p.stem if p.is_file() else p.name for p in PKG.iterdir()
            if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())}


def test_no_import_cycle_between_top_level_parts():
    parts = _existing_parts()
    graph: dict[str, set[str]] = {n: set() for n in parts}
    for p in _product_files():
        rel = p.relative_to(PKG).with_suffix("").parts
        src = rel[0]
        if src == "__init__":
            continue
        if rel[-1] == "__main__":  # an entry point (python -m): nothing imports it, so it closes no cycle
            src = ".".join(rel)
            graph.setdefault(src, set())
        for mod, _line in _imports(p):
            dst = _part(mod)
            if dst in parts and dst != src:
                graph[src].add(dst)
    # Tarjan's strongly connected components: any component with 2+ parts is a cycle
    index, low, stack, on, sccs, counter = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            sccs.append(comp)

    for v in sorted(graph):
        if v not in index:
            visit(v)
    cycles = [sorted(c) for c in sccs if len(c) > 1]
    detail = {c[0]: {n: sorted(graph[n] & set(c)) for n in c} for c in map(sorted, cycles)}
    assert not cycles, f"import cycles between parts of migration_engine: {detail}"


FORBIDDEN_IN_DAGS = ("migration_engine.alerts", "migration_engine.db", "migration_engine.control", "psycopg2")


def test_dag_files_are_thin():
    problems = []
    for p in sorted((ROOT / "dags").glob("*.py")):
        tree = ast.parse(p.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Try):
                problems.append(f"{p.name}:{node.lineno} try/except (errors are mapped by the layer)")
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "print":
                problems.append(f"{p.name}:{node.lineno} print (the layer logs)")
        for mod, line in _imports(p):
            if mod.startswith(FORBIDDEN_IN_DAGS):
                problems.append(f"{p.name}:{line} imports {mod} (alerts and database access live in the layer)")
        for node in tree.body:  # top level: the SDK, the product package, the standard library
            names = [node.module] if isinstance(node, ast.ImportFrom) else \
                [a.name for a in node.names] if isinstance(node, ast.Import) else []
            for name in filter(None, names):
                top = name.split(".")[0]
                if not (name.startswith("airflow.sdk") or top in ("migration_engine", "__future__")
                        or top in sys.stdlib_module_names):
                    problems.append(f"{p.name}:{node.lineno} top-level import of {name}")
    assert not problems, "\n".join(problems)


def test_parsing_the_dags_loads_no_heavy_client():
    """GX and the Slack SDK are imported inside tasks only (parsing stays cheap)."""
    code = ("import sys, runpy, glob\n"
            "for f in sorted(glob.glob('dags/*.py')): runpy.run_path(f)\n"
            "heavy = [m for m in ('great_expectations', 'slack_sdk') if m in sys.modules]\n"
            "assert not heavy, heavy")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
