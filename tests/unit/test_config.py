"""The migration config: the default file loads; each kind of mistake is named in the error."""

from __future__ import annotations

import copy
import re
from datetime import timedelta

import pytest
import yaml

from migration_engine.config import DEFAULT_CONFIG_PATH, ConfigError, load_config, parse_config


@pytest.fixture
def raw() -> dict:
    return yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())


def test_default_config_describes_the_seed_migration():
    cfg = load_config(DEFAULT_CONFIG_PATH)
    assert cfg.connections.legacy == "breederhq_db"
    assert cfg.connections.new == "marketplace_db"
    assert cfg.connections.slack == "slack_api_default"
    listings = cfg.entities["listings"]
    assert str(listings.old_table) == "public.marketplace_listings"
    assert str(listings.new_table) == "marketplace.service_listings"
    status = next(c for c in listings.columns if c.new == "status")
    assert status.map["ACTIVE"] == "active"
    assert [s.pct for s in cfg.cutover.rollout] == [10, 25, 50, 100]
    assert [s.hold for s in cfg.cutover.rollout] == [timedelta(hours=h) for h in (4, 4, 8, 24)]
    assert cfg.dual_write.warn_below_pct == 95 and cfg.dual_write.critical_below_pct == 90
    assert cfg.cutover.dual_write_min_success_pct == 99
    assert cfg.cutover.dual_write_window == timedelta(hours=48)
    assert cfg.cutover.shadow_mismatch_max_pct == 0.1
    assert cfg.cutover.error_rate_max_increase_points == 0.5
    assert cfg.dual_write.latency_p95_warn_ms == 500
    assert cfg.cleanup.archive_retention == timedelta(days=90)
    idx = {i.name: i for i in cfg.schema_changes.indexes}
    # step 1.2's definition, not the appendix's
    assert idx["idx_invoices_marketplace_transaction"].columns == ["tenant_id", "marketplace_transaction_id", "status"]


@pytest.mark.parametrize(
    "mutate, expected",
    [
        (lambda d: d.update(colour="blue"), "colour: unknown key"),
        (lambda d: d["dual_write"].update(warn_below_pct=150),
         "dual_write.warn_below_pct: Input should be less than or equal to 100"),
        (lambda d: d["connections"].pop("legacy"), "connections.legacy: required key is missing"),
        (lambda d: d["connections"].update(new=""), "connections.new"),
        (lambda d: d["cutover"]["rollout"][1].update(pct=5), "rollout percentages must strictly increase"),
        (lambda d: d["cutover"]["rollout"][0].update(hold="four hours"), "cutover.rollout.0.hold"),
        (lambda d: d["entities"]["listings"].update(key="id; DROP TABLE x"), "entities.listings.key"),
        (lambda d: d["entities"]["listings"].update(old_table="a.b.c"), "expected 'schema.table'"),
        (lambda d: d["dual_write"].update(critical_below_pct=97), "critical_below_pct must not be above"),
        (lambda d: d["schema_changes"]["add_columns"][0].update(type="text; drop"), "is not a supported column type"),
        (lambda d: d["entities"]["listings"]["columns"][0].update(colour=1),
         "entities.listings.columns.0.colour: unknown key"),
        (lambda d: d.update(time_scale=2), "time_scale"),
    ],
)
def test_bad_config_names_the_key(raw, mutate, expected):
    data = copy.deepcopy(raw)
    mutate(data)
    with pytest.raises(ConfigError) as err:
        parse_config(data, source="bad.yaml")
    assert expected in str(err.value)
    assert "bad.yaml" in str(err.value)


def test_all_errors_reported_at_once(raw):
    data = copy.deepcopy(raw)
    data["nope"] = 1
    data["dual_write"]["min_attempts"] = 0
    with pytest.raises(ConfigError) as err:
        parse_config(data)
    assert "nope" in str(err.value) and "dual_write.min_attempts" in str(err.value)


def test_time_scale_compresses_windows_not_timeouts(raw):
    cfg = parse_config(raw, time_scale=0.001)
    assert cfg.cutover.dual_write_window == timedelta(hours=48) * 0.001
    assert cfg.cutover.rollout[0].hold == timedelta(hours=4) * 0.001
    assert cfg.dual_write.window == timedelta(hours=1) * 0.001
    assert cfg.ddl.lock_timeout == timedelta(seconds=2)  # timeouts are never scaled


def test_time_scale_env_override(tmp_path, monkeypatch, raw):
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(raw))
    monkeypatch.setenv("MIGRATION_TIME_SCALE", "0.01")
    assert load_config(p).cleanup.archive_retention == timedelta(days=90) * 0.01
    monkeypatch.setenv("MIGRATION_TIME_SCALE", "fast")
    with pytest.raises(ConfigError, match="MIGRATION_TIME_SCALE"):
        load_config(p)


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="not found"):
        load_config(tmp_path / "absent.yaml")
    p = tmp_path / "broken.yaml"
    p.write_text("name: [unclosed\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(p)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError, match="mapping at the top level"):
        load_config(p)


def test_same_database_switch_routes_new_side_to_legacy_connection(raw):
    assert parse_config(raw).conn_id("new") == "marketplace_db"
    raw["same_database"] = True
    assert parse_config(raw).conn_id("new") == "breederhq_db"


def test_load_is_cached_until_the_file_changes(tmp_path, raw):
    p = tmp_path / "m.yaml"
    p.write_text(yaml.safe_dump(raw))
    a = load_config(p)
    assert load_config(p) is a
    raw["name"] = "renamed"
    p.write_text(yaml.safe_dump(raw))
    import os
    os.utime(p, ns=(p.stat().st_atime_ns, p.stat().st_mtime_ns + 10_000_000))
    assert load_config(p).name == "renamed"


def _write(path, data) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data))


def test_overlay_extends_a_base_relative_to_itself(tmp_path, raw):
    _write(tmp_path / "base" / "migration.yaml", raw)
    overlay = tmp_path / "rehearsal" / "short.yaml"
    _write(overlay, {"extends": "../base/migration.yaml", "name": "short",
                     "dual_write": {"window": "20s"},  # a mapping merges: the other dual_write keys stay
                     "cutover": {"rollout": [{"pct": 100, "hold": "1m"}]}})  # a list replaces
    cfg = load_config(overlay)
    assert cfg.name == "short" and cfg.dual_write.window == timedelta(seconds=20)
    assert cfg.dual_write.warn_below_pct == 95 and cfg.dual_write.max_gap == timedelta(minutes=10)
    assert [(s.pct, s.hold) for s in cfg.cutover.rollout] == [(100, timedelta(minutes=1))]
    assert cfg.connections.legacy == "breederhq_db" and "listings" in cfg.entities
    # an overlay of an overlay; a null replaces too
    top = tmp_path / "top.yaml"
    _write(top, {"extends": "rehearsal/short.yaml", "cutover": {"keep_old_sync": None}})
    cfg = load_config(top)
    assert cfg.name == "short" and cfg.cutover.keep_old_sync is None and len(cfg.cutover.rollout) == 1


def test_overlay_errors_name_the_key_and_the_file(tmp_path, raw):
    base = tmp_path / "migration.yaml"
    _write(base, raw)
    overlay = tmp_path / "overlay.yaml"
    _write(overlay, {"extends": "migration.yaml", "dual_write": {"warn_below_pct": 150, "colour": 1}})
    with pytest.raises(ConfigError) as err:
        load_config(overlay)
    text = str(err.value)
    assert f"migration config {overlay} (extends {base}) is invalid" in text
    assert f"dual_write.warn_below_pct: Input should be less than or equal to 100 (got 150)  [{overlay}]" in text
    assert f"dual_write.colour: unknown key (not part of the config schema; check the spelling)  [{overlay}]" in text
    # a mistake in the base is attributed to the base
    raw["cutover"]["rollout"][0]["hold"] = "four hours"
    _write(base, raw)
    in_base = r"cutover\.rollout\.0\.hold: .*'four hours'.*  \[" + re.escape(str(base)) + r"\]"
    with pytest.raises(ConfigError, match=in_base):
        load_config(overlay)


def test_overlay_cycle_missing_base_and_bad_extends_are_refused(tmp_path, raw):
    a, b = tmp_path / "a.yaml", tmp_path / "b.yaml"
    _write(a, {"extends": "b.yaml", "name": "a"})
    _write(b, {"extends": "./a.yaml", "name": "b"})
    with pytest.raises(ConfigError, match=re.escape(f"`extends` cycle: {a} -> {b} -> {a}")):
        load_config(a)
    _write(a, {"extends": "a.yaml"})
    with pytest.raises(ConfigError, match="`extends` cycle"):
        load_config(a)
    _write(a, {"extends": "nowhere/migration.yaml"})
    missing = f"{a} extends {tmp_path}/nowhere/migration.yaml, which does not exist"
    with pytest.raises(ConfigError, match=re.escape(missing)):
        load_config(a)
    _write(a, {"extends": ["migration.yaml"]})
    with pytest.raises(ConfigError, match=r"`extends` must be the path of the base config .* got \['migration.yaml'\]"):
        load_config(a)
    (tmp_path / "broken.yaml").write_text("name: [unclosed\n")
    _write(a, {"extends": "broken.yaml"})
    with pytest.raises(ConfigError, match="broken.yaml is not valid YAML"):
        load_config(a)


def test_overlay_cache_notices_a_changed_base(tmp_path, raw):
    import os

    base, overlay = tmp_path / "migration.yaml", tmp_path / "overlay.yaml"
    _write(base, raw)
    _write(overlay, {"extends": "migration.yaml", "dual_write": {"window": "20s"}})
    first = load_config(overlay)
    assert load_config(overlay) is first
    raw["name"] = "renamed in the base"
    _write(base, raw)
    os.utime(base, ns=(base.stat().st_atime_ns, base.stat().st_mtime_ns + 10_000_000))
    again = load_config(overlay)
    assert again.name == "renamed in the base" and again.dual_write.window == timedelta(seconds=20)
