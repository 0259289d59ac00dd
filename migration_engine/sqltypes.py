"""How a config column type is spelt by Postgres (shared by phase 1 and the preflight).

Why its own module: phase 1 compares an existing column with the type it would add, and the
preflight (which phase 1's prepare calls) does the same before anything runs; neither may import the
other (no import cycles).
"""

from __future__ import annotations

import re

_SIMPLE_TYPES = {
    "int": "integer", "integer": "integer", "smallint": "smallint", "bigint": "bigint",
    "boolean": "boolean", "text": "text", "date": "date", "uuid": "uuid", "jsonb": "jsonb",
    "timestamp": "timestamp without time zone", "timestamptz": "timestamp with time zone",
    "timestamp with time zone": "timestamp with time zone", "double precision": "double precision",
    "real": "real", "numeric": "numeric",
}


def canonical_type(type_text: str) -> str:
    """Spell a config type the way Postgres' format_type / information_schema do."""
    t = re.sub(r"\s+", " ", type_text.strip().lower())
    if t in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[t]
    m = re.fullmatch(r"(?:varchar|character varying)\s*\((\d+)\)", t)
    if m:
        return f"character varying({int(m.group(1))})"
    m = re.fullmatch(r"numeric\s*\((\d+)(?:,\s*(\d+))?\)", t)
    if m:
        return f"numeric({int(m.group(1))},{int(m.group(2) or 0)})"
    return t
