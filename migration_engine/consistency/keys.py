"""Keys of any supported type for the diff, the references and the repair.

The diff, the reference check and the repair never do arithmetic on a key: ranges are cut at
keys the server returns in key order (``key_boundaries.sql``), checksum sub-ranges are
``width_bucket(key, boundaries)``, rows are paged by keyset on the key, and two streams of rows
are merged by equality inside bounded windows (never by comparing keys in Python), so every order
the server has - a text key's collation included - works. Integer keys keep the free arithmetic
split (their density is known from min/max), everything else uses boundaries.

Values go to the server as text literals of unknown type (psycopg2 renders a ``str`` as
``'...'``), so PostgreSQL resolves each against the key column it is compared with
(``t.id >= '0b6e...'`` is a uuid comparison and uses the index), and key lists as one array
literal (``t.id = ANY('{...}')`` resolves to the column's array type). Findings store the key as
text with its type (``consistency_findings.key_type``, control-schema migration 007); the repair
parses it back with :meth:`KeyType.parse` and refuses a key whose column type changed since.

Supported: smallint / integer / bigint, uuid, text / varchar (any deterministic collation, the
same on both databases). Composite keys are not supported (the config names one key column).
The same ideas as ``migration_engine/keys.py`` of the backfill (catalog lookup, supported-type
check, text storage); kept small so the two can be merged.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from migration_engine import sqlfiles
from migration_engine.config import TableRef
from migration_engine.consistency.results import ConsistencyError

INTEGER = ("int2", "int4", "int8")
SUPPORTED = {"int2": "smallint", "int4": "integer", "int8": "bigint", "uuid": "uuid", "text": "text",
             "varchar": "varchar"}
_FAMILY = {"int2": "integer", "int4": "integer", "int8": "integer", "uuid": "uuid", "text": "text",
           "varchar": "text"}
LEGACY_KEY_TYPE = "int8"  # findings recorded before migration 007 (key_type NULL): integer keys only


@dataclass(frozen=True)
class KeyType:
    """One key column's type as the catalog has it (``udt``: int8, uuid, text, varchar)."""

    udt: str
    data_type: str = ""
    collation: str | None = None

    @property
    def integer(self) -> bool:
        return self.udt in INTEGER

    @property
    def family(self) -> str:
        return _FAMILY.get(self.udt, self.udt)

    def parse(self, text: str) -> Any:
        """A key stored as text, as the Python value the queries bind (exact: no float, no rounding)."""
        if self.integer:
            try:
                return int(text)
            except (TypeError, ValueError):
                raise ConsistencyError(
                    f"stored key {text!r} is not an integer ({self.data_type or self.udt})") from None
        return str(text)

    def value(self, v: Any) -> Any:
        """A key read from the server, as bound back to it (uuid and text keys travel as text)."""
        if v is None:
            return None
        return int(v) if self.integer else str(v)


def describe(table: TableRef, column: str, kt: KeyType) -> str:
    return f"{table}.{column} ({kt.data_type or kt.udt})"


def key_type(conn, table: TableRef, column: str) -> KeyType | None:
    """The catalog's type of ``table.column``, or None when there is no such column."""
    with conn.cursor() as cur:
        sqlfiles.run(cur, "consistency/key_column.sql", params={
            "schema_name": table.schema_name, "table_name": table.table, "column_name": column})
        row = cur.fetchone()
    if row is None:
        return None
    udt, data_type, _category, collation, deterministic = row
    if not deterministic:
        raise ConsistencyError(f"{table}.{column} ({data_type}) uses the nondeterministic collation {collation}: "
                               "keys that compare equal but differ in text cannot be diffed by key")
    return KeyType(udt, data_type, collation)


def require_key(conn, what: str, where: str, table: TableRef, column: str) -> KeyType:
    """The key column's type; raises naming ``what`` (entity / reference), the column and its type."""
    kt = key_type(conn, table, column)
    if kt is None:
        raise ConsistencyError(f"{what}: {where}: key column {table}.{column} does not exist")
    if kt.udt not in SUPPORTED:
        raise ConsistencyError(
            f"{what}: {where}: key column {table}.{column} is {kt.data_type}; keys of that type are not "
            f"supported (supported: {', '.join(sorted(set(SUPPORTED.values())))}; single-column keys only)")
    return kt


def require_same_order(what: str, a: tuple[str, TableRef, str, KeyType], b: tuple[str, TableRef, str, KeyType]) -> None:
    """Both sides of a diff must hold the same kind of key, ordered alike (ranges cut on one side
    are applied on the other)."""
    (wa, ta, ca, ka), (wb, tb, cb, kb) = a, b
    if ka.family != kb.family:
        raise ConsistencyError(f"{what}: {wa} key {describe(ta, ca, ka)} and {wb} key {describe(tb, cb, kb)} are "
                               "different types: their values never match")
    if ka.family == "text" and ka.collation != kb.collation:
        raise ConsistencyError(
            f"{what}: {wa} key {describe(ta, ca, ka)} sorts by collation {ka.collation} but {wb} key "
            f"{describe(tb, cb, kb)} by {kb.collation}: key ranges cut on one side would not hold the same "
            "keys on the other; give both columns the same collation (e.g. COLLATE \"C\")")


def array_literal(values: list[Any]) -> str:
    """A PostgreSQL array literal (``{"a","b"}``) of key values, of unknown type until compared.

    Every element is quoted, ``"`` and ``\\`` escaped, so any text key (commas, braces, spaces,
    the word NULL) survives exactly."""
    out = []
    for v in values:
        if v is None:
            raise ValueError("a key list cannot hold NULL")
        s = str(v).replace("\\", "\\\\").replace('"', '\\"')
        out.append(f'"{s}"')
    return "{" + ",".join(out) + "}"
