"""The config shape of a column's value transform (``entities.<name>.columns[i]``), checked at load.

Why its own module: ``config.py`` only adds the fields to ``ColumnMap``; the shapes and the rules
of combining them live here, next to nothing else, so ``config`` can import them without an
import cycle (this module imports no other part of the package but ``sqlfiles``). The SQL that a
transform becomes is built by :mod:`migration_engine.transforms`.

A column's value is computed on the legacy server, in this order::

    source  ->  map | lookup  ->  scale  ->  cast  ->  default

* source: the ``old`` column (a rename needs nothing else), or ``concat`` (several old columns as
  text), ``json_object`` (``jsonb_build_object`` of old columns) or ``expression`` (a reviewed
  SQL file ``include/sql/transforms/<name>.sql``, never SQL text from the config or a UI);
* ``map`` / ``lookup`` (unchanged; only on a plain ``old`` column);
* ``scale``: multiply by ``by`` (``100`` turns 5.37 into cents) and round as ``rounding`` says;
* ``cast``: an explicit ``CAST(... AS <type>)``;
* ``default``: a constant for NULL (``coalesce``).

Rollback scenario 3 runs the transform backwards: scale divides, cast casts back to the old
column's type, default becomes NULL again, map is inverted; concat, json_object and expression
have no inverse unless ``inverse`` names one reviewed file per old column.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

from migration_engine import sqlfiles

TRANSFORM_DIR = "transforms"
_IDENT_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,62}$")
_NAME_RE = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# The types an explicit cast may name (format_type spellings and their usual short forms).
CAST_TYPE_RE = re.compile(
    r"^(smallint|integer|int|int2|int4|int8|bigint|boolean|bool|text|date|time|timestamp|timestamptz|"
    r"timestamp with time zone|timestamp without time zone|uuid|json|jsonb|double precision|float8|real|float4|"
    r"varchar\(\d{1,5}\)|character varying\(\d{1,5}\)|character varying|varchar|char\(\d{1,5}\)|"
    r"numeric(\(\d{1,3}(,\s*\d{1,3})?\))?|decimal(\(\d{1,3}(,\s*\d{1,3})?\))?|interval|inet|citext)$",
    re.IGNORECASE,
)
ROUNDINGS = ("half_even", "half_up", "floor", "ceil", "error")


def _ident(value: str) -> str:
    if not isinstance(value, str) or not _IDENT_RE.match(value):
        raise ValueError(f"{value!r} is not a plain SQL identifier (letters, digits, _; max 63)")
    return value


def _cast_type(value: str) -> str:
    if not isinstance(value, str) or not CAST_TYPE_RE.match(value.strip()):
        raise ValueError(f"{value!r} is not a type a cast may name (e.g. bigint, numeric(12,2), text, jsonb, "
                         "timestamptz, uuid)")
    return " ".join(value.strip().lower().split())


def expression_file(name: str) -> str:
    """The SQL file of a named expression (relative to the SQL dir)."""
    return f"{TRANSFORM_DIR}/{name}.sql"


def _expression_name(value: str) -> str:
    if not isinstance(value, str) or not _NAME_RE.match(value):
        raise ValueError(f"{value!r} is not an expression name (lower-case letters, digits, _; it names the "
                         f"reviewed file include/sql/{TRANSFORM_DIR}/<name>.sql, never a path or SQL)")
    try:
        sqlfiles.find(expression_file(value))
    except FileNotFoundError as exc:
        raise ValueError(f"expression {value!r}: {exc}") from None
    return value


Ident = Annotated[str, AfterValidator(_ident)]
CastType = Annotated[str, AfterValidator(_cast_type)]
ExpressionName = Annotated[str, AfterValidator(_expression_name)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, validate_default=True)


class Scale(_Strict):
    """Multiply by ``by`` and round to a whole number as ``rounding`` says (``by: 100``: 5.37 -> 537)."""

    by: Decimal = Field(description="The factor (e.g. 100 for cents, 0.001 for grams to kg); not 0.")
    rounding: Literal["half_even", "half_up", "floor", "ceil", "error"] = Field(
        description="How a product with a fraction becomes whole: half_even (banker's: 0.5 -> 0, 1.5 -> 2), "
                    "half_up (away from zero: 0.5 -> 1, -0.5 -> -1), floor, ceil, or error (refuse the row: "
                    "the backfill plan names the keys of such rows, a later one fails its batch).")

    @model_validator(mode="after")
    def _factor(self) -> Scale:
        if not self.by.is_finite() or self.by == 0:
            raise ValueError(f"scale.by must be a finite number other than 0, got {self.by}")
        return self


class Concat(_Strict):
    """Old columns as text, joined by ``separator``; NULL parts are skipped, all NULL gives NULL."""

    columns: Annotated[list[Ident], Field(min_length=2, description="The old columns, in order.")]
    separator: Annotated[str, Field(max_length=100, description="Put between the non-NULL parts.")] = ""

    @model_validator(mode="after")
    def _unique(self) -> Concat:
        if len(set(self.columns)) != len(self.columns):
            raise ValueError(f"concat.columns lists a column twice: {self.columns}")
        return self


class ExpressionRef(_Strict):
    """A reviewed SQL file ``include/sql/transforms/<name>.sql`` holding ``SELECT <expression>;``.

    Its ``"{placeholder}"`` identifiers are columns (old columns for a forward expression, new
    columns for an inverse); ``args`` renames them (``{first: given_name}``), a placeholder not in
    ``args`` names the column of the same name. Written as the bare name when no ``args`` are needed.
    """

    name: ExpressionName = Field(description="File name without .sql under include/sql/transforms/.")
    args: dict[Ident, Ident] = Field(default_factory=dict,
                                     description="Placeholder -> column, for placeholders not named like the column.")

    @model_validator(mode="before")
    @classmethod
    def _from_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value


JsonKey = Annotated[str, Field(min_length=1, max_length=200)]


# The fields ColumnMap gets (config.py declares them with these types and descriptions).
FIELD_DESCRIPTIONS = {
    "old": "The legacy column (new = old name is a rename; nothing else needed). May be left out with concat, "
           "json_object or expression: it is then their first column.",
    "cast": "Explicit CAST(value AS <type>) on the legacy server, after map/scale, e.g. bigint, numeric(12,2).",
    "scale": "Multiply by 'by' and round ({by: 100, rounding: half_even} turns 5.37 into 537 cents).",
    "default": "A constant for NULL, applied last (coalesce); the reverse sync turns it back into NULL.",
    "concat": "Build the value from several old columns as text: {columns: [first_name, last_name], separator: ' '}.",
    "json_object": "Build a jsonb object: {json key: old column, ...} (jsonb_build_object).",
    "expression": "A reviewed SQL file include/sql/transforms/<name>.sql ('SELECT <expression>;', \"{column}\" "
                  "placeholders); a name or {name, args}.",
    "inverse": "For concat/json_object/expression: how rollback scenario 3 gets the old value(s) back - a file name "
               "(for the column 'old'), or {old column: file name or {name, args}}; placeholders name new columns.",
}


def _kinds(cm: Any) -> list[str]:
    return [k for k in ("map", "lookup", "scale", "cast", "default", "concat", "json_object", "expression")
            if getattr(cm, k) is not None]


def sources(cm: Any) -> list[str]:
    """The old columns a column mapping reads, in order (forward expression placeholders included)."""
    if cm.concat is not None:
        return list(cm.concat.columns)
    if cm.json_object is not None:
        return list(dict.fromkeys(cm.json_object.values()))
    if cm.expression is not None:
        return expression_columns(cm.expression)
    return [cm.old]


def expression_columns(ref: ExpressionRef) -> list[str]:
    """The columns a named expression reads: its placeholders through ``args``."""
    tpl = sqlfiles.load(expression_file(ref.name))
    return [ref.args.get(p, p) for p in sorted(tpl.identifiers)]


def fill_old(value: Any) -> Any:
    """Before validation: ``old`` defaults to the first column of concat / json_object / expression."""
    if not isinstance(value, dict) or value.get("old") is not None:
        return value
    if isinstance(value.get("concat"), dict) and value["concat"].get("columns"):
        return {**value, "old": value["concat"]["columns"][0]}
    if isinstance(value.get("json_object"), dict) and value["json_object"]:
        return {**value, "old": next(iter(value["json_object"].values()))}
    expr = value.get("expression")
    name = expr if isinstance(expr, str) else expr.get("name") if isinstance(expr, dict) else None
    if isinstance(name, str) and _NAME_RE.match(name):
        try:
            tpl = sqlfiles.load(expression_file(name))
        except FileNotFoundError:
            return value  # the expression's own check names the missing file
        args = expr.get("args") or {} if isinstance(expr, dict) else {}
        cols = [args.get(p, p) for p in sorted(tpl.identifiers)]
        if cols:
            return {**value, "old": cols[0]}
    return value


def check(cm: Any) -> Any:
    """After validation: the transforms combine sensibly; raises ValueError naming the column."""
    who = f"column {cm.new!r}"
    kinds = _kinds(cm)
    if cm.old is None:
        raise ValueError(f"{who}: give 'old' (the legacy column), or build the value with concat, json_object "
                         "or expression")
    built = [k for k in ("concat", "json_object", "expression") if k in kinds]
    if len(built) > 1:
        raise ValueError(f"{who}: use one of concat, json_object, expression, not {built}")
    if cm.map is not None and cm.lookup is not None:
        raise ValueError(f"column {cm.new!r}: use either 'map' or 'lookup', not both")
    if cm.lookup is not None and len(kinds) > 1:
        raise ValueError(f"{who}: a looked-up column takes no other transform (it is resolved in the new database), "
                         f"found {[k for k in kinds if k != 'lookup']}")
    if built and (cm.map is not None or cm.lookup is not None):
        raise ValueError(f"{who}: map/lookup apply to a plain 'old' column, not to {built[0]}")
    if cm.scale is not None and (cm.map is not None or cm.concat is not None or cm.json_object is not None):
        raise ValueError(f"{who}: scale needs a number; it cannot follow map, concat or json_object")
    if built:
        srcs = sources(cm)
        if not srcs:
            raise ValueError(f"{who}: expression {cm.expression.name!r} reads no column (no \"{{column}}\" "
                             "placeholder); a constant is a 'default', not a transform")
        if cm.old not in srcs:
            raise ValueError(f"{who}: old {cm.old!r} is not one of the columns its {built[0]} reads {srcs}")
        if cm.expression is not None:
            _check_expression_file(cm.expression, who)
    if cm.inverse is not None:
        if not built:
            raise ValueError(f"{who}: 'inverse' applies to concat, json_object and expression; "
                             f"{kinds or ['a plain copy']} invert themselves")
        inv = cm.inverse if isinstance(cm.inverse, dict) else {cm.old: ExpressionRef(name=cm.inverse)}
        extra = sorted(set(inv) - set(sources(cm)))
        if extra:
            raise ValueError(f"{who}: inverse names {extra}, which the {built[0]} does not read {sources(cm)}")
        for ref in inv.values():
            _check_expression_file(ref, f"{who} inverse")
    return cm


def inverse_refs(cm: Any) -> dict[str, ExpressionRef]:
    """Old column -> the reviewed inverse expression (empty when none is declared)."""
    if cm.inverse is None:
        return {}
    if isinstance(cm.inverse, dict):
        return dict(cm.inverse)
    return {cm.old: ExpressionRef(name=cm.inverse)}


def _check_expression_file(ref: ExpressionRef, who: str) -> None:
    tpl = sqlfiles.load(expression_file(ref.name))
    if tpl.params:
        raise ValueError(f"{who}: {tpl.path} uses @values {sorted(tpl.params)}; an expression file takes "
                         "only \"{column}\" placeholders (write constants into the file)")
    unknown = sorted(set(ref.args) - tpl.identifiers)
    if unknown:
        raise ValueError(f"{who}: args {unknown} are not placeholders of {tpl.path} "
                         f"(it has {sorted(tpl.identifiers)})")
    try:
        expression_body(tpl.path.read_text(), tpl.name)
    except ValueError as exc:
        raise ValueError(f"{who}: {exc}") from None


def expression_body(text: str, name: str) -> str:
    """The expression of a ``SELECT <expression>;`` file (comments dropped); ValueError if not that shape."""
    body = "\n".join(ln for ln in text.splitlines() if not ln.strip().startswith("--")).strip()
    if not body.endswith(";"):
        raise ValueError(f"{name}: an expression file must be one 'SELECT <expression>;' ending with ';'")
    body = body[:-1].strip()
    if not body.upper().startswith("SELECT "):
        raise ValueError(f"{name}: an expression file must be 'SELECT <expression>;'")
    body = body[len("SELECT "):].strip()
    bare = _strip_strings(body)
    if ";" in bare:
        raise ValueError(f"{name}: an expression file holds one expression, not several statements")
    if re.search(r"\b(SELECT|WHERE|UNION|INTO)\b", bare, re.IGNORECASE):
        raise ValueError(f"{name}: an expression file holds an expression of the row's own columns, not a "
                         "query (no sub-SELECT, WHERE, UNION, INTO)")
    return body


def _strip_strings(text: str) -> str:
    return re.sub(r"'(?:[^']|'')*'", "''", text)
