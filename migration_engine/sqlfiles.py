"""Load SQL from include/sql with safe identifier and value substitution.

Files stay valid PostgreSQL (so `squawk` can lint them) by using two placeholder forms:

* ``"{name}"`` - an identifier from config; rendered with ``psycopg2.sql.Identifier``.
* ``@name``    - a value; rendered as the bound parameter ``%(name)s`` (not a reserved word:
  ``@table`` does not parse, ``@table_name`` does).

Placeholders inside string literals and comments are left alone. ``%`` and braces in the file are
escaped so psycopg2 and ``sql.SQL.format`` see them literally.
"""

from __future__ import annotations

import os
import re
from functools import lru_cache
from pathlib import Path
from typing import Any

from psycopg2 import sql

from migration_engine import paths

SQL_DIR_ENV = "MIGRATION_SQL_DIR"

_TOKEN_RE = re.compile(
    r"""
    (?P<string>'(?:[^']|'')*')            # string literal
  | (?P<dollar>\$\$.*?\$\$)               # $$ body $$ (function bodies)
  | (?P<line_comment>--[^\n]*)
  | (?P<block_comment>/\*.*?\*/)
  | (?P<ident>"\{(?P<ident_name>[A-Za-z_]\w*)\}")
  | (?P<param>(?<![\w@])@(?P<param_name>[A-Za-z_]\w*))
  | (?P<special>[{}%])
    """,
    re.VERBOSE | re.DOTALL,
)


_EXTRA_DIRS: list[Path] = []


def sql_dir() -> Path:
    """The product's SQL ($MIGRATION_SQL_DIR overrides the shipped files)."""
    return Path(os.environ.get(SQL_DIR_ENV) or paths.sql_dir())


def add_sql_dir(path: Path | str) -> None:
    """Search ``path`` too, after the product's files (dev tooling keeps its SQL apart this way)."""
    p = Path(path).resolve()
    if p not in _EXTRA_DIRS:
        _EXTRA_DIRS.append(p)


def find(name: str) -> Path:
    """The first file called ``name`` in the product's SQL dir, then in added dirs."""
    dirs = [sql_dir(), *_EXTRA_DIRS]
    for d in dirs:
        if (d / name).is_file():
            return d / name
    raise FileNotFoundError(f"SQL file not found: {name} (looked in {', '.join(map(str, dirs))})")


def _escape(text: str) -> str:
    return text.replace("%", "%%").replace("{", "{{").replace("}", "}}")


def compile_template(text: str) -> tuple[str, frozenset[str], frozenset[str]]:
    """Return (format string for sql.SQL, identifier names, parameter names)."""
    out: list[str] = []
    idents: set[str] = set()
    params: set[str] = set()
    pos = 0
    for m in _TOKEN_RE.finditer(text):
        out.append(text[pos:m.start()])  # plain text: the regex already took every { } %
        kind = m.lastgroup
        if kind in ("string", "dollar", "line_comment", "block_comment", "special"):
            out.append(_escape(m.group(0)))
        elif m.group("ident"):
            idents.add(m.group("ident_name"))
            out.append("{" + m.group("ident_name") + "}")
        elif m.group("param"):
            params.add(m.group("param_name"))
            out.append("%(" + m.group("param_name") + ")s")
        pos = m.end()
    out.append(text[pos:])
    return "".join(out), frozenset(idents), frozenset(params)


@lru_cache(maxsize=256)
def _load(path: str, mtime_ns: int) -> tuple[str, frozenset[str], frozenset[str]]:
    return compile_template(Path(path).read_text())


class SqlTemplate:
    """One SQL file, ready to render with identifiers and run with params."""

    def __init__(self, name: str):
        path = find(name)
        self.name = name
        self.path = path
        self.text, self.identifiers, self.params = _load(str(path), path.stat().st_mtime_ns)

    def compose(self, **identifiers: Any) -> sql.Composed:
        """Fill identifier placeholders; strings become Identifiers, tuples qualified names."""
        missing = self.identifiers - identifiers.keys()
        if missing:
            raise KeyError(f"{self.name}: identifiers not supplied: {sorted(missing)}")
        rendered = {}
        for key in self.identifiers:
            value = identifiers[key]
            if isinstance(value, sql.Composable):
                rendered[key] = value
            elif isinstance(value, (tuple, list)):
                rendered[key] = sql.Identifier(*value)
            else:
                rendered[key] = sql.Identifier(str(value))
        return sql.SQL(self.text).format(**rendered)

    def check_params(self, params: dict[str, Any] | None) -> dict[str, Any]:
        params = dict(params or {})
        missing = self.params - params.keys()
        if missing:
            raise KeyError(f"{self.name}: parameters not supplied: {sorted(missing)}")
        return {k: v for k, v in params.items() if k in self.params}


def load(name: str) -> SqlTemplate:
    return SqlTemplate(name)


def render(cur, name: str, identifiers: dict[str, Any] | None = None, params: dict[str, Any] | None = None) -> str:
    """The exact SQL text that `run` would send (for dry-run plans and logs)."""
    tpl = load(name)
    return cur.mogrify(tpl.compose(**(identifiers or {})), tpl.check_params(params)).decode()


def run(cur, name: str, identifiers: dict[str, Any] | None = None, params: dict[str, Any] | None = None):
    """Execute a file as one batch; params is always a dict so escaped %% are unescaped."""
    tpl = load(name)
    cur.execute(tpl.compose(**(identifiers or {})), tpl.check_params(params))
    return cur


def split_statements(text: str) -> list[str]:
    """Split rendered SQL into statements on top-level semicolons (quotes/comments respected).

    Needed because CREATE INDEX CONCURRENTLY must run alone, outside a transaction block.
    """
    stmts: list[str] = []
    buf: list[str] = []
    i, n = 0, len(text)
    while i < n:
        c = text[i]
        if c == "'" or c == '"':
            j = i + 1
            while j < n:
                if text[j] == c:
                    if j + 1 < n and text[j + 1] == c:
                        j += 2
                        continue
                    break
                j += 1
            buf.append(text[i:j + 1])
            i = j + 1
        elif text.startswith("--", i):
            j = text.find("\n", i)
            j = n if j == -1 else j
            buf.append(text[i:j])
            i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2)
            j = n if j == -1 else j + 2
            buf.append(text[i:j])
            i = j
        elif text.startswith("$$", i):
            j = text.find("$$", i + 2)
            j = n if j == -1 else j + 2
            buf.append(text[i:j])
            i = j
        elif c == ";":
            stmt = "".join(buf).strip()
            if _has_code(stmt):
                stmts.append(stmt)
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    stmt = "".join(buf).strip()
    if _has_code(stmt):
        stmts.append(stmt)
    return stmts


def _has_code(stmt: str) -> bool:
    lines = [ln for ln in stmt.splitlines() if ln.strip() and not ln.strip().startswith("--")]
    return bool(lines)
