"""The diff, references and repair on UUID- and text-keyed entities, against real Postgres.

Own fixture tables (schema ``keytest`` in both databases; the marketplace demo schema is not
touched): ``devices`` keyed by a uuid, ``skus`` keyed by a varchar code in an ICU collation (its
order is not Python's: 'a-lower' < 'A-upper', spaces and punctuation weigh less) whose values carry
every character an array literal or a text comparison could trip on (quotes, commas, braces, a
backslash, spaces, the word NULL, non-ASCII, the empty string). On each, a changed, a missing-in-new, an extra-in-new
(ghost) and an out-of-scope row are planted; the diff must name exactly those keys, the repair fixes
them and a fresh diff passes. A reference chunked on a uuid primary key finds its orphan by exact
key; unsupported keys (numeric, composite) are refused naming the entity, the column and its type.
"""

from __future__ import annotations

import copy
import uuid

import psycopg2
import pytest
import yaml

from migration_engine import control, steps
from migration_engine.config import DEFAULT_CONFIG_PATH, Ddl, parse_config
from migration_engine.consistency import runs
from migration_engine.consistency.diff import diff_entity
from migration_engine.consistency.references import check_reference
from migration_engine.consistency.step import ConsistencyRun
from migration_engine.errors import VerificationError
from migration_engine.repair import RepairRun

pytestmark = pytest.mark.timeout(240)

SCHEMA = "migration_control"
N = 1500
ODD_CODES = ['a,b', 'quote"d', "back\\slash", "{brace}", "sp ace", "NULL", "ümlaut-é", "tab\there", "'single'",
             "A-upper", "a-lower", ""]

LEGACY_DDL = """
CREATE SCHEMA keytest;
CREATE TABLE keytest.devices (id uuid PRIMARY KEY, name text NOT NULL, state text NOT NULL,
                              updated_at timestamptz NOT NULL);
CREATE TABLE keytest.skus (code varchar(40) COLLATE "en-x-icu" PRIMARY KEY, title text NOT NULL, state text NOT NULL,
                           updated_at timestamptz NOT NULL);
CREATE TABLE keytest.measures (id numeric PRIMARY KEY, v text);
CREATE TABLE keytest.pairs (a int, b int, v int, PRIMARY KEY (a, b));
"""
NEW_DDL = """
CREATE SCHEMA keytest;
CREATE TABLE keytest.devices (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY, legacy_device_id uuid UNIQUE,
                              name text NOT NULL, state text NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE keytest.skus (id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
                           legacy_sku_code varchar(40) COLLATE "en-x-icu" UNIQUE, title text NOT NULL,
                           state text NOT NULL, updated_at timestamptz NOT NULL);
CREATE TABLE keytest.readings (id uuid PRIMARY KEY, device_id uuid NOT NULL, value int);
CREATE TABLE keytest.measures (id bigint PRIMARY KEY, legacy_measure_id numeric UNIQUE, v text);
"""


def _entity(old, new, key, legacy_id, cols):
    return {"old_table": old, "new_table": new, "key": key, "new_key": "id", "legacy_id_column": legacy_id,
            "scope": {"column": "state", "values": ["live"]},
            "columns": [{"new": c, "old": c} for c in cols]}


def config_dict(**consistency) -> dict:
    data = copy.deepcopy(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text()))
    data["entities"] = {
        "devices": _entity("keytest.devices", "keytest.devices", "id", "legacy_device_id",
                           ["name", "state", "updated_at"]),
        "skus": _entity("keytest.skus", "keytest.skus", "code", "legacy_sku_code", ["title", "state", "updated_at"]),
    }
    data["references"] = [{"name": "readings_to_devices",
                           "from": {"db": "new", "table": "keytest.readings", "column": "device_id"},
                           "to": {"db": "legacy", "table": "keytest.devices", "column": "id"}}]
    data["consistency"].update({"recheck_delay": "10ms", "count_parity": [], **consistency})
    return data


def _connect(dbs):
    return {"legacy": lambda: psycopg2.connect(dbs.legacy_dsn), "new": lambda: psycopg2.connect(dbs.new_dsn)}


def _copy(dbs, table: str, key: str, legacy_id: str, cols: list[str]) -> None:
    rows = dbs.query("legacy", f"SELECT {key}, {', '.join(cols)} FROM keytest.{table} WHERE state = 'live'")
    conn = dbs.connect("new")
    with conn.cursor() as cur:
        cur.executemany(f"INSERT INTO keytest.{table} ({legacy_id}, {', '.join(cols)}) "
                        f"VALUES ({', '.join(['%s'] * (len(cols) + 1))})", rows)
    conn.commit()
    conn.close()


@pytest.fixture(name="keyed")
def keyed_fixture(databases):
    """Both databases with the keytest tables, the new side a correct copy of the live rows."""
    databases.query("legacy", LEGACY_DDL)
    databases.query("new", NEW_DDL)
    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    conn.close()
    databases.query("legacy", """
        INSERT INTO keytest.devices
        SELECT gen_random_uuid(), 'device ' || i, CASE WHEN i %% 5 = 0 THEN 'retired' ELSE 'live' END,
               timestamptz '2024-01-01' + i * interval '1 minute'
        FROM generate_series(1, %s) AS i;
        INSERT INTO keytest.skus
        SELECT 'SKU-' || lpad(i::text, 5, '0') || CASE WHEN i %% 7 = 0 THEN ' x' ELSE '' END, 'title ' || i,
               CASE WHEN i %% 5 = 0 THEN 'retired' ELSE 'live' END, timestamptz '2024-01-01' + i * interval '1 minute'
        FROM generate_series(1, %s) AS i;
        INSERT INTO keytest.skus SELECT c, 'odd ' || c, 'live', timestamptz '2024-06-01' FROM unnest(%s::text []) AS c;
    """, (N, N, ODD_CODES))
    _copy(databases, "devices", "id", "legacy_device_id", ["name", "state", "updated_at"])
    _copy(databases, "skus", "code", "legacy_sku_code", ["title", "state", "updated_at"])
    devices = [r[0] for r in databases.query("new", "SELECT legacy_device_id FROM keytest.devices")]
    databases.query("new", "INSERT INTO keytest.readings SELECT gen_random_uuid(), d, 1 FROM unnest(%s::uuid []) AS d",
                    (devices,))
    return databases


def plant(dbs, table: str, key: str, legacy_id: str, value_col: str, keys: list) -> dict:
    """changed / missing_in_new / missing_in_old (a ghost) / out of scope (old row retired), by key."""
    changed, missing, out_of_scope = keys[0], keys[1], keys[2]
    ghost = str(uuid.uuid4()) if table == "devices" else "zz-ghost,{\"}"
    dbs.query("new", f"UPDATE keytest.{table} SET {value_col} = 'tampered' WHERE {legacy_id} = %s", (changed,))
    dbs.query("new", f"DELETE FROM keytest.{table} WHERE {legacy_id} = %s", (missing,))
    dbs.query("new", f"INSERT INTO keytest.{table} ({legacy_id}, {value_col}, state, updated_at) "
                     "VALUES (%s, 'ghost', 'live', now())", (ghost,))
    dbs.query("legacy", f"UPDATE keytest.{table} SET state = 'retired' WHERE {key} = %s", (out_of_scope,))
    return {"changed": changed, "missing_in_new": missing, "missing_in_old": ghost, "out_of_scope": out_of_scope}


def _live(dbs, table: str, key: str, where: str = "") -> list:
    return [r[0] for r in dbs.query("legacy", f"SELECT {key}::text FROM keytest.{table} WHERE state = 'live' {where} "
                                              f"ORDER BY {key} LIMIT 3")]


CHUNKINGS = [{}, {"chunk_size": 100, "bisect_min_rows": 4, "bisect_factor": 4, "parallelism": 3}]


@pytest.mark.parametrize("chunking", CHUNKINGS, ids=["default", "tiny-chunks"])
def test_uuid_and_text_keys_pass_clean_and_find_planted_rows_by_exact_key(keyed, chunking):
    cfg = parse_config(config_dict(**chunking))
    connect = _connect(keyed)
    for name in ("devices", "skus"):
        clean = diff_entity(cfg, name, connect["legacy"], connect["new"])
        assert clean.status == "passed", clean.message
        assert clean.old_count == clean.new_count > N * 0.7
    dev = plant(keyed, "devices", "id", "legacy_device_id", "name", _live(keyed, "devices", "id"))
    odd = [c for c in ODD_CODES if c]  # the odd codes themselves: changed 'a,b', missing 'quote"d', ...
    sku = plant(keyed, "skus", "code", "legacy_sku_code", "title", odd[:3])
    for name, planted in (("devices", dev), ("skus", sku)):
        r = diff_entity(cfg, name, connect["legacy"], connect["new"])
        assert r.status == "failed"
        assert r.counts == {"missing_in_new": 1, "missing_in_old": 1, "changed": 2, "unlinked_in_new": 0}, r.counts
        assert r.keys("missing_in_new") == [planted["missing_in_new"]]
        assert r.keys("missing_in_old") == [planted["missing_in_old"]]
        assert sorted(r.keys("changed")) == sorted([planted["changed"], planted["out_of_scope"]])
        by_key = {f.key: f for f in r.findings}
        assert by_key[planted["changed"]].columns == (("name",) if name == "devices" else ("title",))
        assert by_key[planted["out_of_scope"]].columns == ("state",)  # its value differs too
        assert {f.key_type for f in r.findings} == {"uuid" if name == "devices" else "varchar"}
        if chunking:  # several chunks, bisection below the chunk level, bounded leaf windows
            assert r.details["chunks"] > 5 and r.details["leaf_ranges"] >= 2, r.details


def _phase3(dbs, cfg, conn):
    """(a new StepRunner, a phase-3 diff run as its step -> (run id, passed))."""
    n = [0]

    def runner() -> steps.StepRunner:
        n[0] += 1
        return steps.StepRunner(conn, schema=SCHEMA, ddl=Ddl(), actor="test:keys",
                                context={"dag_id": "test_keys", "run_id": f"run-{n[0]}", "task_id": "t"})

    def diff() -> tuple[int, bool]:
        r = runner()
        step = ConsistencyRun(cfg, "diff", phase="phase3", connect=_connect(dbs))
        r.apply([step])
        run = step.current(r.executor(planning=True))
        try:
            r.verify([step])
        except VerificationError:
            return run.id, False
        return run.id, True

    return runner, diff


def test_repair_fixes_uuid_and_text_keyed_rows_and_a_fresh_diff_passes(keyed):
    cfg = parse_config(config_dict(chunk_size=100, bisect_min_rows=4, bisect_factor=4))
    dev = plant(keyed, "devices", "id", "legacy_device_id", "name", _live(keyed, "devices", "id"))
    sku = plant(keyed, "skus", "code", "legacy_sku_code", "title", ['quote"d', "back\\slash", "{brace}"])
    conn = keyed.connect("legacy")
    runner, diff = _phase3(keyed, cfg, conn)

    run_pk, passed = diff()
    assert not passed
    stored = dict(keyed.query("legacy", f"SELECT entity_key, key_type FROM {SCHEMA}.consistency_findings "
                                        "WHERE run_pk = %s AND check_name = 'skus'", (run_pk,)))
    assert stored == {sku["changed"]: "varchar", sku["missing_in_new"]: "varchar", sku["missing_in_old"]: "varchar",
                      sku["out_of_scope"]: "varchar"}
    step = RepairRun(cfg, run_pk, connect=_connect(keyed), sleep=lambda s: None)
    r = runner()
    (applied,) = r.apply([step])
    assert any("devices: insert 1, re-copy 1, delete 2" in note for note in applied.notes), applied.notes
    assert any("skus: insert 1, re-copy 1, delete 2" in note for note in applied.notes), applied.notes
    r.verify([step])
    _run2, passed = diff()
    assert passed
    for table, legacy_id, planted in (("devices", "legacy_device_id", dev), ("skus", "legacy_sku_code", sku)):
        left = keyed.query("new", f"SELECT {legacy_id}::text FROM keytest.{table} WHERE {legacy_id}::text = ANY(%s)",
                           ([planted["missing_in_old"], planted["out_of_scope"]],))
        assert left == [], (table, left)
        (restored,) = keyed.query("new", f"SELECT {legacy_id}::text FROM keytest.{table} WHERE {legacy_id}::text = %s",
                                  (planted["missing_in_new"],))
        assert restored == (planted["missing_in_new"],)
    conn.close()


def test_reference_on_a_uuid_key_finds_its_orphan_by_exact_key(keyed):
    cfg = parse_config(config_dict(chunk_size=100))
    connect = _connect(keyed)
    clean = check_reference(cfg, "readings_to_devices", connect)
    assert clean.status == "passed" and clean.details["chunks"] > 5, clean.message
    reading, device = str(uuid.uuid4()), str(uuid.uuid4())
    keyed.query("new", "INSERT INTO keytest.readings VALUES (%s, %s, 1)", (reading, device))
    r = check_reference(cfg, "readings_to_devices", connect)
    assert r.status == "failed" and r.counts == {"orphan": 1}
    (f,) = r.findings
    assert (f.key, f.detail["value"], f.key_type) == (reading, device, "uuid")
    assert r.details["rows_checked"] == clean.details["rows_checked"] + 1


def test_unsupported_keys_are_refused_naming_entity_column_and_type(keyed):
    data = config_dict()
    data["entities"]["measures"] = {"old_table": "keytest.measures", "new_table": "keytest.measures", "key": "id",
                                    "legacy_id_column": "legacy_measure_id", "columns": [{"new": "v", "old": "v"}]}
    data["references"].append({"name": "pairs_to_devices", "from": {"db": "legacy", "table": "keytest.pairs",
                                                                    "column": "v"},
                               "to": {"db": "legacy", "table": "keytest.pairs", "column": "v"}})
    cfg = parse_config(data)
    connect = _connect(keyed)
    r = diff_entity(cfg, "measures", connect["legacy"], connect["new"])
    assert r.status == "error"
    assert "entity 'measures'" in r.message and "keytest.measures.id is numeric" in r.message, r.message
    assert "supported: bigint, integer, smallint, text, uuid, varchar" in r.message
    ref = check_reference(cfg, "pairs_to_devices", connect)
    assert ref.status == "error"
    assert "reference pairs_to_devices" in ref.message and "single-column primary key" in ref.message
    assert "a int4, b int4" in ref.message, ref.message
    results = {c["name"]: runs.execute_check(cfg, c, connect) for c in runs.plan_checks(cfg)}
    assert results["devices"].status == results["skus"].status == "passed"  # one bad entity hides nothing

    # keys that sort differently on the two sides: ranges cut on one would not hold the same keys on the other
    keyed.query("new", 'ALTER TABLE keytest.skus ALTER COLUMN legacy_sku_code TYPE varchar(40) COLLATE "C"')
    r = diff_entity(cfg, "skus", connect["legacy"], connect["new"])
    assert r.status == "error" and "sorts by collation en-x-icu" in r.message and "by C" in r.message, r.message


def test_leaf_windows_match_rows_by_equality_with_full_pages_on_both_sides(keyed):
    """The leaf comparison reads a window of at most page_size rows per side, cut at a key the
    server returned, and matches rows by equality: with a 7-row page over the whole ICU-ordered
    table (full pages on both sides, one side far denser in places) it finds exactly what it should."""
    from migration_engine.consistency.diff import EntityDiffer, _Acc
    from migration_engine.consistency.plan import build_entity_plan
    from migration_engine.consistency.sessions import SessionPool

    cfg = parse_config(config_dict())
    sku = plant(keyed, "skus", "code", "legacy_sku_code", "title", ["a,b", 'quote"d', "back\\slash"])
    retired = [r[0] for r in keyed.query("legacy", "UPDATE keytest.skus SET state = 'retired' WHERE code IN "
                                                   "(SELECT code FROM keytest.skus WHERE state = 'live' "
                                                   "ORDER BY code DESC LIMIT 30) RETURNING code")]
    gone = [r[0] for r in keyed.query("new", "DELETE FROM keytest.skus WHERE legacy_sku_code IN "
                                             "(SELECT legacy_sku_code FROM keytest.skus ORDER BY legacy_sku_code "
                                             "OFFSET 40 LIMIT 25) RETURNING legacy_sku_code")]
    connect = _connect(keyed)
    with SessionPool(connect["legacy"], cfg.consistency.statement_timeout, label="legacy") as old, \
            SessionPool(connect["new"], cfg.consistency.statement_timeout, label="new") as new:
        differ = EntityDiffer(cfg, build_entity_plan(cfg, "skus", old.get(), new.get()), old, new)
        differ.page_size = 7
        acc = _Acc()
        differ._merge_rows(None, None, acc)
    found = {k: sorted(f.key for f in acc.findings if f.kind == k) for k in ("missing_in_new", "missing_in_old",
                                                                              "changed")}
    assert found["missing_in_old"] == [sku["missing_in_old"]]
    assert found["missing_in_new"] == sorted({sku["missing_in_new"], *gone} - set(retired))
    assert found["changed"] == sorted({sku["changed"], sku["out_of_scope"], *retired} - set(gone))
    assert acc.rows_compared == len(keyed.query("legacy", "SELECT 1 FROM keytest.skus")) + 1  # + the ghost


def test_shadow_read_mismatches_keep_uuid_and_text_keys_exactly(databases):
    """The application's shadow-read comparisons store the key as text (any key type); the phase-4
    gate's examples give it back unchanged."""
    from datetime import UTC, datetime, timedelta

    from migration_engine.appclient import ControlClient
    from migration_engine.gates.runner import resolve

    conn = databases.connect("legacy")
    control.ensure_control_schema(conn, SCHEMA)
    client = ControlClient(lambda: psycopg2.connect(databases.legacy_dsn), SCHEMA)
    device, code = uuid.uuid4(), 'quote"d, {x}'
    client.record_shadow_read("devices", matched=False, key=device, diffs={"name": ["a", "b"]})
    client.record_shadow_read("devices", matched=False, key=code, diffs={"title": ["c", "d"]})
    client.flush()
    evaluator, _ = resolve("shadow_reads")
    r = evaluator(conn, parse_config(config_dict()), datetime.now(UTC) + timedelta(minutes=2), entity="devices")
    assert sorted(e["key"] for e in r.figures["examples"]) == sorted([str(device), code])
    conn.close()


def test_repair_refuses_keys_recorded_with_another_type_and_changes_nothing(keyed):
    """A run's keys are read back with the type they were recorded with: when the key column's
    type no longer matches (config or table changed since the run), the repair refuses, naming both."""
    from migration_engine.repair import RepairError
    from tests.snapshots import snapshot, unchanged

    cfg = parse_config(config_dict())
    plant(keyed, "skus", "code", "legacy_sku_code", "title", ["a,b", 'quote"d', "{brace}"])
    conn = keyed.connect("legacy")
    runner, diff = _phase3(keyed, cfg, conn)
    run_pk, passed = diff()
    assert not passed
    keyed.query("legacy", f"UPDATE {SCHEMA}.consistency_findings SET key_type = 'int8' "
                          "WHERE run_pk = %s AND check_name = 'skus'", (run_pk,))
    before = {side: snapshot(dsn) for side, dsn in (("legacy", keyed.legacy_dsn), ("new", keyed.new_dsn))}
    with pytest.raises(RepairError, match=r"cannot repair skus: the run recorded int8 keys but keytest.skus.code is "
                                          r"character varying\(40\) now"):
        runner().apply([RepairRun(cfg, run_pk, connect=_connect(keyed), sleep=lambda s: None)])
    after = {side: snapshot(dsn) for side, dsn in (("legacy", keyed.legacy_dsn), ("new", keyed.new_dsn))}
    assert not unchanged(before["new"], after["new"])
    assert not [p for p in unchanged(before["legacy"], after["legacy"]) if "keytest" in p]  # the run's record only
    conn.close()
