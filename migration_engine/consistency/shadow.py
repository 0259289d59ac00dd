"""Shadow comparisons: is what the new table holds for these keys what the old rows map to?

An application doing shadow reads (seed 4.1) reads a row from one side and asks whether the other
side agrees. Comparing in application code would need its own copy of the column mapping (value
maps, lookups, scale, casts, concatenations, named expressions) and would drift from the diff.
:class:`ShadowComparer` asks both servers instead, with the diff's own column expressions
(:func:`~migration_engine.consistency.plan.build_entity_plan`): one indexed query per side for a
handful of keys, so a shadow read and the hourly diff always agree on what "equal" means.

    comparer = ShadowComparer(cfg, "orders", legacy_conn, new_conn)   # checks the catalogs once
    diffs = comparer.compare([17, 42])      # {42: {"amount_cents": {"old": 538, "new": 536}}}
    client.record_shadow_reads("orders", [17, 42], diffs)             # appclient.ControlClient

The key list is bound as an array of the key's own values (ints for an integer key). Values are
compared as the servers render them into JSON, so give both connections the same ``TimeZone``
(``consistency.sessions.configure_session`` pins what the diff pins).
"""

from __future__ import annotations

from typing import Any

from migration_engine.config import MigrationConfig
from migration_engine.consistency.plan import build_entity_plan, execute


class ShadowComparer:
    """One entity's shadow comparison on a pair of connections (plan built once)."""

    def __init__(self, cfg: MigrationConfig, entity_name: str, legacy, new) -> None:
        self.legacy, self.new = legacy, new
        self.plan = build_entity_plan(cfg, entity_name, legacy, new)
        legacy.rollback()
        new.rollback()

    def _values(self, side: str, keys: list[Any]) -> dict[Any, tuple[bool, list]]:
        p = self.plan
        conn, name, ids, params = (
            (self.legacy, "consistency/shadow_old_values.sql", p.old_identifiers(), p.old_params()) if side == "old"
            else (self.new, "consistency/shadow_new_values.sql", p.new_identifiers(), p.new_params()))
        try:
            with conn.cursor() as cur:
                execute(cur, name, ids, {**params, "keys": list(keys)})
                return {k: (bool(in_scope), list(v)) for k, in_scope, v in cur.fetchall()}
        finally:
            conn.rollback()

    def compare(self, keys: list[Any]) -> dict[Any, dict[str, Any]]:
        """Keys whose sides differ -> what differs: ``{column: {"old": mapped old, "new": new}}``,
        ``{"row": "missing in new"}`` / ``"missing in old"``, or ``{"scope": ...}``. Equal keys and
        keys out of scope on both sides (not migrated by design) are left out."""
        if not keys:
            return {}
        old, new = self._values("old", keys), self._values("new", keys)
        out: dict[Any, dict[str, Any]] = {}
        for k in keys:
            o, n = old.get(k), new.get(k)
            o_in, n_in = bool(o and o[0]), bool(n and n[0])
            if not (o_in or n_in):
                continue
            if o is None or n is None:
                out[k] = {"row": "missing in old" if o is None else "missing in new"}
                continue
            cols = {c: {"old": a, "new": b} for c, a, b in zip(self.plan.columns, o[1], n[1], strict=True)
                    if a != b or type(a) is not type(b)}
            if o_in != n_in:
                cols["scope"] = {"old": o_in, "new": n_in}
            if cols:
                out[k] = cols
        return out
