"""SQL template convention: identifiers quoted, values bound, literals untouched; squawk clean."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from migration_engine.sqlfiles import compile_template, split_statements, sql_dir


def test_placeholders_outside_literals_only():
    text, idents, params = compile_template(
        "-- uses @x and \"{y}\"\nSELECT \"{col}\" FROM \"{s}\".\"{t}\" WHERE a > @lo "
        "AND b LIKE '%m@x{z}%' AND j @> '{}'::jsonb;"
    )
    assert idents == {"col", "s", "t"} and params == {"lo"}
    assert "%(lo)s" in text and "'%%m@x{{z}}%%'" in text and "'{{}}'" in text


def test_rendering_quotes_hostile_identifiers(pg_cluster):
    import psycopg2

    from migration_engine.sqlfiles import SqlTemplate

    conn = psycopg2.connect(pg_cluster.dsn())
    tpl = SqlTemplate("control/flags_get.sql")
    rendered = tpl.compose(schema='x"; DROP TABLE y; --').as_string(conn)
    assert '"x""; DROP TABLE y; --".feature_flags' in rendered
    with pytest.raises(KeyError, match="identifiers not supplied"):
        tpl.compose()
    conn.close()


def test_split_statements_respects_quotes_and_bodies():
    stmts = split_statements("SELECT ';';\nCREATE FUNCTION f() AS $$ BEGIN x; END $$;\n-- only a comment;\n")
    assert stmts == ["SELECT ';'", "CREATE FUNCTION f() AS $$ BEGIN x; END $$"]


def _squawk() -> str:
    exe = Path(sys.executable).with_name("squawk")
    return str(exe) if exe.exists() else (shutil.which("squawk") or pytest.skip("squawk not installed"))


def test_every_sql_file_passes_squawk():
    from devtools import SQL_DIR as devtools_sql

    examples = Path(__file__).resolve().parents[2] / "examples"  # the shipped example migrations' schemas
    files = sorted(str(p) for d in (sql_dir(), devtools_sql, examples) for p in d.rglob("*.sql"))
    assert all(any(f"/{d}/" in f for f in files) for d in ("devtools/sql", "include/sql", "examples"))
    proc = subprocess.run([_squawk(), *files], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout + proc.stderr
