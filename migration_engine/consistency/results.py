"""Result types shared by the checks, the store, the suites and the alerts."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal

from migration_engine.errors import MigrationError

# What a finding can be. "unlinked_in_new": an in-scope new row without an old key.
KINDS = ("missing_in_new", "missing_in_old", "changed", "unlinked_in_new", "orphan", "invalid_value", "null_value",
         "error")
CheckKind = Literal["entity", "reference", "count", "suite"]
CheckStatus = Literal["passed", "failed", "error"]


class ConsistencyError(MigrationError):
    """A check cannot run as configured (missing table or column, incompatible types...).

    The message names the database, table and column, and how to fix it. Checks catch it and
    record the check as ``error`` (so one missing column does not hide the other checks' results).
    """


@dataclass(frozen=True)
class Finding:
    kind: str
    key: Any
    columns: tuple[str, ...] = ()
    detail: dict[str, Any] = field(default_factory=dict)
    key_type: str | None = None  # the key column's type (int8, uuid, text...) when ``key`` is a table key

    def as_row(self) -> dict[str, Any]:
        return {"kind": self.kind, "entity_key": str(self.key), "key_type": self.key_type,
                "columns": list(self.columns), "detail": self.detail}

    def describe(self) -> str:
        """``42 (title, status)`` / ``17 → 999999``: how a key is named in an alert."""
        if self.kind == "changed" and self.columns:
            return f"{self.key} ({', '.join(self.columns)})"
        if self.kind == "orphan" and "value" in self.detail:
            return f"{self.key} → {self.detail['value']}"
        return str(self.key)


def _sort_key(key: Any) -> tuple:
    return (0, key, "") if isinstance(key, (int, float)) else (1, 0, str(key))


@dataclass
class CheckResult:
    """One check's outcome. ``counts`` are exact; ``findings`` is the stored sample per kind."""

    name: str
    kind: CheckKind
    status: CheckStatus
    counts: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    old_count: int | None = None
    new_count: int | None = None
    message: str = ""
    duration_s: float = 0.0
    details: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return self.status == "passed"

    def keys(self, kind: str) -> list[Any]:
        return [f.key for f in self.findings if f.kind == kind]

    def first(self, kind: str, n: int) -> list[Finding]:
        return sorted((f for f in self.findings if f.kind == kind), key=lambda f: _sort_key(f.key))[:n]

    def sample(self, max_keys: int) -> dict[str, list[str]]:
        """The first ``max_keys`` offending keys per kind, as alert-ready strings."""
        out: dict[str, list[str]] = {}
        for kind in KINDS:
            found = self.first(kind, max_keys)
            if found:
                out[kind] = [f.describe() for f in found]
        return out

    def summary(self, max_keys: int) -> dict[str, Any]:
        """JSON-able digest for XCom, the control tables and alerts."""
        return {"name": self.name, "kind": self.kind, "status": self.status, "counts": dict(self.counts),
                "old_count": self.old_count, "new_count": self.new_count, "message": self.message,
                "duration_s": round(self.duration_s, 3), "sample": self.sample(max_keys),
                "details": self.details}

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def cap_findings(findings: list[Finding], per_kind: int) -> list[Finding]:
    """Keep the ``per_kind`` lowest keys of every kind (deterministic across runs)."""
    out: list[Finding] = []
    for kind in KINDS:
        of_kind = sorted((f for f in findings if f.kind == kind), key=lambda f: _sort_key(f.key))
        out.extend(of_kind[:per_kind])
    return out
