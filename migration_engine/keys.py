"""Keys of any supported btree-orderable type: what the key is, how bounds are stored and compared.

Why one module: the backfill (keyset pages, key ranges, checkpoints, the ghost sweep), phase 1's
batched updates and the consistency diff all walk a table in key order and remember where they
are. They used to assume an integer key (``int(...)``, ``min - 1``, ``max()``, ``::bigint[]``).
Everything key-type-specific lives here instead:

* :func:`read_key` reads the key column's type from the catalog and returns a :class:`Key`, or
  raises :class:`UnsupportedKey` naming the entity, the column and its type.
* **Supported**: single-column keys of ``smallint`` / ``integer`` / ``bigint``, ``uuid``,
  ``text`` / ``varchar`` / ``char`` (and domains over them). Not (yet) composite keys, and not the
  rest: floats (their text form does not round-trip every value exactly), ``numeric``,
  timestamps, enums, ``json`` (no btree ordering at all)... each refused with a clear error before
  anything is written.
* **Bounds are stored as text** in the control tables (the server's own output of the value:
  ``key::text``), and cast back on the server with the column's type (``@after::uuid``): the
  comparison always happens in the key's own type and collation, never in Python. ``None`` is
  "before the first key" (an open lower bound); an integer key keeps ``min - 1`` as today.
* :meth:`Key.cast` is the type as a ``psycopg2.sql`` composable (``"pg_catalog"."uuid"``), used
  in SQL files as ``@after::"{key_type}"`` and ``@keys::"{key_type}" []``.
* :func:`copy_field` parses a key out of ``COPY ... TO STDOUT`` text output (undoing COPY's
  backslash escapes) without ``int()``; :meth:`Key.array_literal` turns a batch's keys back into
  one array parameter cheaply (the integer path stays a join of the raw bytes: no per-row work
  beyond what it always did).

Python values: an integer key's values are ``int`` (as psycopg2 returns them), every other key's
are ``str`` in the server's text form; :meth:`Key.value` converts a stored text bound.
"""

from __future__ import annotations

from dataclasses import dataclass

from psycopg2 import sql

from migration_engine import sqlfiles
from migration_engine.errors import ConfigError

# base type (pg_type.typname) -> kind. The kinds decide only the Python value and the array
# literal; ordering is always the server's (the column's btree opclass and collation).
_KINDS = {"int2": "integer", "int4": "integer", "int8": "integer", "uuid": "uuid",
          "text": "text", "varchar": "text", "bpchar": "text"}
SUPPORTED = "smallint, integer, bigint, uuid, text, varchar or char (one column)"

_COPY_ESCAPES = {ord("b"): b"\b", ord("f"): b"\f", ord("n"): b"\n", ord("r"): b"\r", ord("t"): b"\t",
                 ord("v"): b"\v", ord("\\"): b"\\"}


class UnsupportedKey(ConfigError):
    """The key column is missing or of a type the engine cannot page by."""


@dataclass(frozen=True)
class Key:
    """One key column as the catalog describes it."""

    column: str
    type_name: str          # format_type(): "uuid", "character varying(40)", "bigint"
    base_type: str          # pg_type.typname of the (domain's) base type: int8, uuid, varchar ...
    collation: str | None = None  # the column's collation for text kinds (None: the default / not text)

    @property
    def kind(self) -> str:
        return _KINDS[self.base_type]

    @property
    def is_integer(self) -> bool:
        return self.kind == "integer"

    @property
    def cast(self) -> sql.Composable:
        """The type to cast text bounds back to, as an identifier (only catalog type names from _KINDS)."""
        return sql.Identifier("pg_catalog", self.base_type)

    def value(self, text: str | None):
        """A stored text bound as a Python value: ``int`` for integer keys, else the text itself."""
        if text is None:
            return None
        return int(text) if self.is_integer else text

    def text(self, value) -> str | None:
        """A Python key value as the text stored in the control tables."""
        return None if value is None else str(value)

    def before(self, key_min):
        """The lower bound that excludes nothing at or above ``key_min``: ``min - 1`` for an integer
        key (the layout of passes planned before other key types existed), else open (None)."""
        return key_min - 1 if self.is_integer else None

    def bound(self, param: str) -> sql.Composed:
        """A bound parameter cast to the key's type: ``%(param)s::"pg_catalog"."uuid"``."""
        return sql.SQL("{}::{}").format(sql.Placeholder(param), self.cast)

    def after(self, column: sql.Composable, param: str) -> sql.Composed:
        """``(%(p)s::type IS NULL OR column > %(p)s::type)``: the keyset predicate "after the bound",
        open when the bound is NULL (the planner folds the constant test away). For SQL composed in
        code; SQL files write the same with ``@p::"{key_type}"``."""
        b = self.bound(param)
        return sql.SQL("({b} IS NULL OR {col} > {b})").format(b=b, col=column)

    def up_to(self, column: sql.Composable, param: str) -> sql.Composed:
        """``column <= %(p)s::type``: the inclusive upper end of a ``(lo, hi]`` range."""
        return sql.SQL("{} <= {}").format(column, self.bound(param))

    def order_by(self, column: sql.Composable) -> sql.Composed:
        """``column`` as an ORDER BY item (the column's own btree order and collation)."""
        return sql.SQL("{} ASC").format(column)

    def array_literal(self, copy_keys: list[bytes]) -> str | list[str]:
        """An array parameter of keys parsed from COPY text (``@keys::"{key_type}" []``).

        Integer and uuid keys print without any character COPY or an array literal would escape,
        so their bytes join into ``{1,2,3}`` directly (as fast as before); text keys are unescaped
        and passed as a list that psycopg2 quotes.
        """
        if self.kind == "text":
            return [copy_field(k) for k in copy_keys]
        return "{" + b",".join(copy_keys).decode() + "}"

    def parse(self, field: bytes):
        """One key from COPY text as a Python value."""
        return self.value(copy_field(field))


def copy_field(field: bytes) -> str:
    """One field of ``COPY TO`` text output as text: undo COPY's backslash escapes (no ``int()``)."""
    if b"\\" not in field:
        return field.decode()
    out = bytearray()
    i, n = 0, len(field)
    while i < n:
        c = field[i]
        if c != 0x5C or i + 1 == n:  # not a backslash (or a trailing one)
            out.append(c)
            i += 1
            continue
        nxt = field[i + 1]
        if nxt in _COPY_ESCAPES:
            out += _COPY_ESCAPES[nxt]
            i += 2
        elif nxt == ord("x") and i + 2 < n and chr(field[i + 2]) in "0123456789abcdefABCDEF":
            j = i + 2
            while j < n and j < i + 4 and chr(field[j]) in "0123456789abcdefABCDEF":
                j += 1
            out.append(int(field[i + 2:j], 16))
            i = j
        elif chr(nxt) in "01234567":
            j = i + 1
            while j < n and j < i + 4 and chr(field[j]) in "01234567":
                j += 1
            out.append(int(field[i + 1:j], 8) & 0xFF)
            i = j
        else:  # any other escaped character stands for itself
            out.append(nxt)
            i += 2
    return out.decode()


def first_field(line: bytes) -> bytes:
    """The first field (the key, by the backfill's column order) of one COPY text line."""
    tab = line.find(b"\t")
    return (line[:tab] if tab != -1 else line).rstrip(b"\n")


def last_line_key(data: bytes) -> bytes:
    """The first field of the last line of COPY text output (the page's high-water key)."""
    end = len(data) - 1 if data.endswith(b"\n") else len(data)
    start = data.rfind(b"\n", 0, end) + 1
    tab = data.find(b"\t", start, end)
    return data[start:tab if tab != -1 else end]


def read_key(conn, *, schema: str, table: str, column: str, what: str) -> Key:
    """The key column of ``schema.table`` from the catalog; refuses what the engine cannot page by.

    ``what`` names the owner in messages (``entity listings``). Reads only; commits nothing.
    """
    with conn.cursor() as cur:
        sqlfiles.run(cur, "common/key_column.sql", params={
            "schema_name": schema, "table_name": table, "column_name": column})
        row = cur.fetchone()
    if row is None:
        raise UnsupportedKey(f"{what}: key column {schema}.{table}.{column} does not exist")
    type_name, base_type, orderable, collation = row
    if base_type not in _KINDS:
        why = ("it has no btree ordering (no default btree operator class), so it cannot be paged by"
               if not orderable else "this type is not supported as a key")
        raise UnsupportedKey(f"{what}: key column {schema}.{table}.{column} is of type {type_name}: {why}; "
                             f"supported key types: {SUPPORTED}")
    return Key(column, type_name, base_type, collation if _KINDS[base_type] == "text" else None)


def compatible(old: Key, new: Key) -> bool:
    """Whether values of ``old`` can be compared with / stored in ``new`` (the legacy-id column)."""
    return old.kind == new.kind


def kind_of(base_type: str) -> str:
    """The kind (integer / uuid / text) of a base type name stored with a backfill pass."""
    try:
        return _KINDS[base_type]
    except KeyError:
        raise UnsupportedKey(f"key type {base_type!r} is not supported; supported key types: {SUPPORTED}") from None
