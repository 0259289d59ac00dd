"""Value transforms (cast, scale, default, concat, json_object, named expression) on the real Postgres.

One entity of the test's own tables (``public.tx_orders`` -> ``public.tx_orders_new``; the
marketplace demo schema is not touched) goes through the backfill, the consistency diff and
rollback scenario 3's reverse sync. Expected values are written out by hand here (5.37 -> 537,
5.375 -> 538 under half_even), not computed by the product's own SQL.
"""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import psycopg2
import pytest

from migration_engine import sqlfiles

# The test's reviewed expression files (include/sql/transforms/ holds a deployment's own).
sqlfiles.add_sql_dir(Path(__file__).resolve().parents[1] / "fixtures" / "transform_sql")

pytestmark = pytest.mark.timeout(120)

LEGACY_DDL = """
CREATE TABLE public.tx_orders (
    id bigserial PRIMARY KEY, amount numeric(10,3), qty integer, note text, first_name text, last_name text,
    street text, city text, code text, status text NOT NULL DEFAULT 'OPEN',
    updated_at timestamptz NOT NULL DEFAULT now());
INSERT INTO public.tx_orders (id, amount, qty, note, first_name, last_name, street, city, code, status) VALUES
    (1, 5.37,   3,    NULL,   'Ann', 'Lee',  'Main St', 'Oslo', ' ab1 ', 'OPEN'),
    (2, 5.375,  1,    'gift', 'Bo',  NULL,   NULL,      'Rome', 'cd2',   'PAID'),
    (3, 5.365,  NULL, NULL,   NULL,  'Cruz', 'Elm 4',   NULL,   'EF3',   'OPEN'),
    (4, NULL,   7,    'x',    NULL,  NULL,   NULL,      NULL,   NULL,    'PAID'),
    (5, -5.365, 2,    NULL,   'Di',  'Ng',   'Oak 9',   'Lima', 'gh4',   'OPEN'),
    (6, 0.004,  9,    'y',    'Ed',  'Ma',   'Pine 1',  'Kiev', 'ij5',   'OPEN');
SELECT setval('public.tx_orders_id_seq', 6);
"""
NEW_DDL = """
CREATE TABLE public.tx_orders_new (
    id bigserial PRIMARY KEY, legacy_order_id bigint UNIQUE, amount_cents bigint, qty bigint, note text,
    full_name text, address jsonb, code text, status text, updated_at timestamptz);
"""
# What the backfill must write, worked out by hand (half_even: 537.5 -> 538, 536.5 -> 536, -536.5 -> -536).
EXPECTED = {
    1: (537, 3, "none", "Ann Lee", {"street": "Main St", "city": "Oslo"}, "AB1", "open"),
    2: (538, 1, "gift", "Bo", {"street": None, "city": "Rome"}, "CD2", "paid"),
    3: (536, None, "none", "Cruz", {"street": "Elm 4", "city": None}, "EF3", "open"),
    4: (None, 7, "x", None, {"street": None, "city": None}, None, "paid"),
    5: (-536, 2, "none", "Di Ng", {"street": "Oak 9", "city": "Lima"}, "GH4", "open"),
    6: (0, 9, "y", "Ed Ma", {"street": "Pine 1", "city": "Kiev"}, "IJ5", "open"),
}
COLUMNS = [
    {"new": "amount_cents", "old": "amount", "scale": {"by": 100, "rounding": "half_even"}, "cast": "bigint"},
    {"new": "qty", "old": "qty", "cast": "bigint"},
    {"new": "note", "old": "note", "default": "none"},
    {"new": "full_name", "concat": {"columns": ["first_name", "last_name"], "separator": " "},
     "inverse": {"first_name": "full_name_first", "last_name": "full_name_rest"}},
    {"new": "address", "json_object": {"street": "street", "city": "city"},
     "inverse": {"street": "address_street", "city": "address_city"}},
    {"new": "code", "expression": {"name": "upper_trim", "args": {"value": "code"}},
     "inverse": {"code": {"name": "lower_text", "args": {"value": "code"}}}},
    {"new": "status", "old": "status", "map": {"OPEN": "open", "PAID": "paid"}},
    {"new": "updated_at", "old": "updated_at"},
]


def entity_dict(columns=None) -> dict:
    return {"old_table": "public.tx_orders", "new_table": "public.tx_orders_new", "key": "id", "new_key": "id",
            "legacy_id_column": "legacy_order_id", "columns": columns or COLUMNS}


def config(columns=None):
    from migration_engine.config import Entity, load_config

    cfg = load_config()
    return cfg.model_copy(update={"entities": {"orders": Entity.model_validate(entity_dict(columns))}})


@pytest.fixture
def orders(databases):
    from migration_engine import control

    databases.query("legacy", LEGACY_DDL)
    databases.query("new", NEW_DDL)
    legacy = databases.connect("legacy")
    control.ensure_control_schema(legacy, "migration_control")
    legacy.close()
    return databases


def backfill(databases, cfg) -> None:
    from migration_engine.backfill import RangeWorker, backfill_settings, plan_entity
    from tests.backfill_fixtures import connectors

    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        s = backfill_settings(cfg, parallelism=2)
        plan = plan_entity(legacy, new, cfg, "orders", s)
    finally:
        legacy.close()
        new.close()
    lc, nc = connectors(databases)
    for j in plan.jobs:
        RangeWorker(cfg, plan.entity, j.run_id, j.range_no, s, lc, nc).run()


def new_rows(databases) -> dict:
    rows = databases.query("new", "SELECT legacy_order_id, amount_cents, qty, note, full_name, address, code, status "
                                  "FROM public.tx_orders_new ORDER BY legacy_order_id")
    return {r[0]: tuple(r[1:]) for r in rows}


def diff(databases, cfg):
    from migration_engine.consistency.diff import diff_entity
    from tests.backfill_fixtures import connectors

    return diff_entity(cfg, "orders", *connectors(databases))


def sync(databases, cfg, *, apply: bool):
    from migration_engine.rollback.sync import ReverseSync

    legacy, new = databases.connect("legacy"), databases.connect("new")
    try:
        return ReverseSync(cfg, "orders", legacy, new).run(apply=apply)
    finally:
        legacy.close()
        new.close()


# --- backfill, diff, reverse sync of one entity with every transform ---------------------------------
def test_backfill_copies_every_transform_exactly_and_the_diff_passes(orders):
    cfg = config()
    backfill(orders, cfg)
    assert new_rows(orders) == EXPECTED
    result = diff(orders, cfg)
    assert result.status == "passed", (result.message, result.findings[:5])
    assert result.old_count == result.new_count == 6


@pytest.mark.parametrize(("column", "bad", "key"), [
    ("amount_cents", "536", 2),              # off by one cent (the rounding)
    ("qty", "4", 1),                         # cast
    ("note", "NULL", 1),                     # the default missing
    ("full_name", "'Ann  Lee'", 1),          # concat
    ("address", """'{"street": "Main St", "city": "Bergen"}'""", 1),   # json_object
    ("code", "'ab1'", 1),                    # the named expression not applied
])
def test_the_diff_finds_a_planted_wrong_value_of_each_transform(orders, column, bad, key):
    cfg = config()
    backfill(orders, cfg)
    orders.query("new", f"UPDATE public.tx_orders_new SET {column} = {bad} WHERE legacy_order_id = %s", (key,))
    result = diff(orders, cfg)
    assert result.status == "failed", result.message
    [changed] = result.findings
    assert (changed.kind, changed.key, changed.columns) == ("changed", key, (column,))


def test_reverse_sync_brings_changed_values_back_through_each_inverse(orders):
    cfg = config()
    backfill(orders, cfg)
    # Right after the backfill the old table already stands for every new row: nothing to write, even
    # where the transform is not one-to-one (5.375 -> 538 cents must not come back as 5.380).
    before = sync(orders, cfg, apply=False)
    assert before.differences == 0 and before.digest_new == before.digest_old, before.as_dict()

    orders.query("new", """UPDATE public.tx_orders_new SET amount_cents = 1234, qty = 40, note = 'none',
        full_name = 'Zed Quist', address = '{"street": "New Rd", "city": "Turku"}', code = 'XY9', status = 'paid'
        WHERE legacy_order_id = 1;
        UPDATE public.tx_orders_new SET note = 'none' WHERE legacy_order_id = 2;""")
    orders.query("new", "INSERT INTO public.tx_orders_new (amount_cents, qty, note, full_name, address, code, status, "
                        "updated_at) VALUES (99, 1, 'hi', 'Solo', '{\"city\": \"Pori\"}', 'NEW1', 'open', now())")
    stats = sync(orders, cfg, apply=True)
    assert (stats.updated, stats.linked_now) == (2, 1), stats.as_dict()
    old = {r[0]: tuple(r[1:]) for r in orders.query(
        "legacy", "SELECT id, amount, qty, note, first_name, last_name, street, city, code, status "
                  "FROM public.tx_orders ORDER BY id")}
    assert old[1] == (Decimal("12.340"), 40, None, "Zed", "Quist", "New Rd", "Turku", "xy9", "PAID")
    assert old[2][2] is None                                  # the default 'none' is NULL again
    assert old[3] == (Decimal("5.365"), None, None, None, "Cruz", "Elm 4", None, "EF3", "OPEN")  # untouched
    assert old[7] == (Decimal("0.990"), 1, "hi", "Solo", None, None, "Pori", "new1", "OPEN")
    after = sync(orders, cfg, apply=False)
    assert after.differences == 0 and after.digest_new == after.digest_old, after.as_dict()


@pytest.mark.parametrize(("index", "column"), [(3, "full_name"), (4, "address"), (5, "code")])
def test_reverse_sync_refuses_a_transform_without_inverse_naming_the_column(orders, index, column):
    from migration_engine.rollback.reverse import ReverseMappingError
    from migration_engine.rollback.sync import ReverseSync

    columns = [dict(c) for c in COLUMNS]
    del columns[index]["inverse"]
    cfg = config(columns)
    legacy, new = orders.connect("legacy"), orders.connect("new")
    try:
        with pytest.raises(ReverseMappingError, match=f"column '{column}' is built by .* which has no inverse"):
            ReverseSync(cfg, "orders", legacy, new)
    finally:
        legacy.close()
        new.close()


def test_reverse_sync_refuses_an_inverse_that_misses_a_source_column(orders):
    from migration_engine.rollback.reverse import ReverseMapping, ReverseMappingError

    columns = [dict(c) for c in COLUMNS]
    columns[3] = {**columns[3], "inverse": {"first_name": "full_name_first"}}
    with pytest.raises(ReverseMappingError, match=r"\['last_name'\].*'full_name' declares no inverse for old column"):
        ReverseMapping(config(columns).entities["orders"], "orders")


def test_reverse_preflight_names_an_inverse_the_new_server_refuses(orders):
    from migration_engine.rollback.sync import probe_reverse

    columns = [dict(c) for c in COLUMNS]
    columns[5] = {**columns[5], "inverse": {"code": {"name": "lower_text", "args": {"value": "no_such_column"}}}}
    legacy, new = orders.connect("legacy"), orders.connect("new")
    try:
        [problem] = probe_reverse(config(columns), "orders", legacy, new)
        assert probe_reverse(config(), "orders", legacy, new) == []
    finally:
        legacy.close()
        new.close()
    assert "new database refuses" in problem and "no_such_column" in problem


# --- rounding ----------------------------------------------------------------------------------------
ROUNDING_INPUT = ["5.37", "5.375", "5.365", "-5.365", "-5.375", "0.004", "0.005", "-0.005"]
ROUNDED = {
    "half_even": [537, 538, 536, -536, -538, 0, 0, 0],
    "half_up": [537, 538, 537, -537, -538, 0, 1, -1],
    "floor": [537, 537, 536, -537, -538, 0, 0, -1],
    "ceil": [537, 538, 537, -536, -537, 1, 1, 0],
}


def _scaled(databases, rounding: str, mode: str, values: list[str]):
    from psycopg2 import sql

    from migration_engine import transforms
    from migration_engine.config import ColumnMap

    cm = ColumnMap.model_validate({"new": "cents", "old": "v", "scale": {"by": 100, "rounding": rounding},
                                   "cast": "bigint"})
    e = transforms.forward(cm, "src", "zdm_t0", mode=mode)
    q = sql.SQL("SELECT {} FROM unnest(CAST(%(vals)s AS numeric[])) WITH ORDINALITY AS src(v, n) ORDER BY n").format(
        e.sql)
    conn = databases.connect("legacy")
    try:
        with conn.cursor() as cur:
            cur.execute(q, {**e.params, "vals": values})
            return [r[0] for r in cur.fetchall()]
    finally:
        conn.close()


@pytest.mark.parametrize("rounding", sorted(ROUNDED))
def test_each_rounding_rounds_as_documented(databases, rounding):
    assert _scaled(databases, rounding, "write", ROUNDING_INPUT) == ROUNDED[rounding]


def test_rounding_error_refuses_a_fraction_and_the_plan_names_the_rows(orders):
    from migration_engine.backfill import BackfillError, backfill_settings, plan_entity

    assert _scaled(orders, "error", "write", ["5.37", "-0.01"]) == [537, -1]
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation, match="refused by the transform of column cents"):
        _scaled(orders, "error", "write", ["5.375"])
    columns = [{**COLUMNS[0], "scale": {"by": 100, "rounding": "error"}}, *COLUMNS[1:]]
    cfg = config(columns)
    legacy, new = orders.connect("legacy"), orders.connect("new")
    try:
        with pytest.raises(BackfillError, match=r"amount -> amount_cents .*id 2 gives 537\.500, id 3 gives 536\.500, "
                                                r"id 5 gives -536\.500, id 6 gives 0\.400"):
            plan_entity(legacy, new, cfg, "orders", backfill_settings(cfg, parallelism=1), dry_run=True)
    finally:
        legacy.close()
        new.close()
    assert orders.query("new", "SELECT count(*) FROM public.tx_orders_new")[0][0] == 0
    # The diff cannot compare a row the mapping refuses either: it stops with the same message.
    with pytest.raises(psycopg2.errors.InvalidTextRepresentation,
                       match="refused by the transform of column amount_cents: scale by 100 .* 537.500"):
        diff(orders, cfg)


# --- the preflight's helpers -------------------------------------------------------------------------
def test_output_type_without_and_with_the_server(orders):
    from migration_engine import transforms

    e = config().entities["orders"]
    by_name = {c.new: c for c in e.columns}
    assert transforms.output_type(by_name["amount_cents"], "numeric(10,3)") == "bigint"
    assert transforms.output_type(by_name["note"], "text") == "text"
    assert transforms.output_type(by_name["address"], None) == "jsonb"
    assert transforms.output_type(by_name["code"], "text") is None          # only the server can say
    unscaled = by_name["amount_cents"].model_copy(update={"cast": None})
    assert transforms.output_type(unscaled, "numeric(10,3)") == "numeric"
    conn = orders.connect("legacy")
    try:
        types = transforms.probe_output_types(conn, e, path="entities.orders")
        assert types == {"amount_cents": "bigint", "qty": "bigint", "note": "text", "full_name": "text",
                         "address": "jsonb", "code": "text", "status": "text",
                         "updated_at": "timestamp with time zone"}
        bad = config([{"new": "qty", "old": "address_json_missing", "cast": "bigint"}]).entities["orders"]
        with pytest.raises(transforms.TransformError, match=r"entities\.orders\.columns\[0\] \(qty\).*"
                                                            "address_json_missing"):
            transforms.probe_output_types(conn, bad, path="entities.orders")
    finally:
        conn.close()


# --- config validation -------------------------------------------------------------------------------
@pytest.mark.parametrize(("column", "message"), [
    ({"new": "a", "old": "b", "scale": {"by": 100}}, "columns.0.scale.rounding: required key is missing"),
    ({"new": "a", "old": "b", "scale": {"by": 0, "rounding": "floor"}}, "scale.by must be a finite number"),
    ({"new": "a", "old": "b", "scale": {"by": 100, "rounding": "nearest"}}, "columns.0.scale.rounding"),
    ({"new": "a", "old": "b", "cast": "bigint; DROP TABLE x"}, "is not a type a cast may name"),
    ({"new": "a", "old": "b", "expression": "../../etc/passwd"}, "is not an expression name"),
    ({"new": "a", "old": "b", "expression": "no_such_expression"}, "SQL file not found: transforms/no_such_expression"),
    ({"new": "a", "expression": {"name": "bad_two_statements", "args": {"value": "b"}}}, "not several statements"),
    ({"new": "a", "expression": {"name": "bad_param", "args": {"value": "b"}}}, "uses @values ['suffix']"),
    ({"new": "a", "expression": {"name": "upper_trim", "args": {"nope": "b"}}}, "args ['nope'] are not placeholders"),
    ({"new": "a", "old": "b", "map": {"X": "x"}, "scale": {"by": 2, "rounding": "floor"}}, "scale needs a number"),
    ({"new": "a", "old": "b", "lookup": {"table": "s.t", "match": "m", "value": "v"}, "default": "0"},
     "a looked-up column takes no other transform"),
    ({"new": "a", "concat": {"columns": ["b", "c"]}, "json_object": {"k": "b"}}, "use one of concat, json_object"),
    ({"new": "a", "concat": {"columns": ["b"]}}, "columns.0.concat.columns"),
    ({"new": "a", "old": "z", "concat": {"columns": ["b", "c"]}}, "old 'z' is not one of the columns"),
    ({"new": "a", "old": "b", "cast": "bigint", "inverse": "lower_text"}, "'inverse' applies to concat"),
    ({"new": "a", "concat": {"columns": ["b", "c"]}, "inverse": {"d": "lower_text"}}, "inverse names ['d']"),
    ({"new": "a"}, "give 'old'"),
])
def test_a_malformed_transform_is_refused_at_load_naming_its_path(column, message):
    from migration_engine.config import parse_config, read_config_data
    from migration_engine.errors import ConfigError

    data = read_config_data()
    data["entities"] = {"orders": entity_dict([column])}
    with pytest.raises(ConfigError) as exc:
        parse_config(data)
    text = str(exc.value)
    assert "entities.orders.columns.0" in text and message in text, text


def test_a_pure_rename_needs_nothing_else():
    from migration_engine import transforms

    cfg = config([{"new": "total", "old": "amount"}])
    [cm] = cfg.entities["orders"].columns
    assert transforms.is_plain(cm) and (cm.old, cm.new) == ("amount", "total")
    assert transforms.output_type(cm, "numeric(10,3)") == "numeric(10,3)"


# --- shadow comparisons ------------------------------------------------------------------------------
def test_shadow_comparison_uses_the_transforms_and_records_the_mismatch(orders):
    import psycopg2 as pg

    from migration_engine.appclient import ControlClient
    from migration_engine.consistency.shadow import ShadowComparer

    cfg = config()
    backfill(orders, cfg)
    orders.query("new", "UPDATE public.tx_orders_new SET amount_cents = 536 WHERE legacy_order_id = 2; "
                        "DELETE FROM public.tx_orders_new WHERE legacy_order_id = 6")
    legacy, new = orders.connect("legacy"), orders.connect("new")
    try:
        comparer = ShadowComparer(cfg, "orders", legacy, new)
        diffs = comparer.compare([1, 2, 3, 6])
    finally:
        legacy.close()
        new.close()
    assert diffs == {2: {"amount_cents": {"old": 538, "new": 536}}, 6: {"row": "missing in new"}}
    client = ControlClient(lambda: pg.connect(orders.legacy_dsn))
    client.record_shadow_reads("orders", [1, 2, 3, 6], diffs)
    client.close()
    assert orders.query("legacy", "SELECT sum(reads_compared), sum(mismatches) "
                                  "FROM migration_control.shadow_read_stats WHERE entity = 'orders'") == [(4, 2)]


def test_the_backfill_plan_refuses_a_cast_the_server_cannot_do_naming_the_column(orders):
    from migration_engine.backfill import BackfillError, backfill_settings, plan_entity

    columns = [COLUMNS[0], {**COLUMNS[1], "cast": "date"}, *COLUMNS[2:]]   # integer -> date
    cfg = config(columns)
    legacy, new = orders.connect("legacy"), orders.connect("new")
    try:
        with pytest.raises(BackfillError, match=r"entities\.orders\.columns\[1\] \(qty\).*cannot cast type "
                                                "integer to date"):
            plan_entity(legacy, new, cfg, "orders", backfill_settings(cfg, parallelism=1))
    finally:
        legacy.close()
        new.close()
    assert orders.query("legacy", "SELECT count(*) FROM migration_control.backfill_runs")[0][0] == 0


def test_constants_are_bound_values_even_with_percent_signs_and_quotes(databases):
    from psycopg2 import sql

    from migration_engine import transforms
    from migration_engine.config import ColumnMap

    cm = ColumnMap.model_validate({"new": "label", "concat": {"columns": ["a", "b"], "separator": "% '"},
                                   "default": "100%"})
    e = transforms.forward(cm, "src", "zdm_t0")
    q = sql.SQL("SELECT {} FROM (VALUES ('x', 'y'), ('x', NULL), (NULL, NULL)) AS src(a, b)").format(e.sql)
    conn = databases.connect("legacy")
    try:
        with conn.cursor() as cur:
            cur.execute(q, e.params)
            assert [r[0] for r in cur.fetchall()] == ["x% 'y", "x", "100%"]
    finally:
        conn.close()
