"""docs/config-reference.md is generated from the config model and must be current; every field documented."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict

from migration_engine import config_reference

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ROOT / "docs" / "config-reference.md"


def test_checked_in_reference_is_current():
    assert REFERENCE.read_text() == config_reference.render(), \
        f"docs/config-reference.md is not current: run `{config_reference.GENERATOR}` and commit it"
    assert config_reference.main(["--check", "--output", str(REFERENCE)]) == 0


def test_every_field_has_a_description():
    assert config_reference.missing_descriptions() == []


def test_a_field_without_a_description_is_found_and_check_fails(tmp_path, monkeypatch):
    class Inner(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        documented: int = 1
        """Has one."""
        bare: int = 2

    class Outer(BaseModel):
        model_config = ConfigDict(use_attribute_docstrings=True)
        inner: Inner = Inner()
        """A section."""
        items: list[Inner] = []

    assert config_reference.missing_descriptions(Outer) == ["inner.bare", "items", "items[].bare"]
    stale = tmp_path / "ref.md"
    stale.write_text(config_reference.render() + "\nedited by hand\n")
    assert config_reference.main(["--check", "--output", str(stale)]) == 1
    monkeypatch.setattr(config_reference, "missing_descriptions", lambda: ["x.y"])
    assert config_reference.main(["--check", "--output", str(REFERENCE)]) == 1


def test_the_reference_explains_keys_scope_durations_and_limits():
    text = REFERENCE.read_text()
    for path in ("entities.<name>.legacy_id_column", "entities.<name>.columns[].lookup.match",
                 "schema_changes.required[].key", "approvals.approvers.<name>[].airflow", "cutover.rollout[].hold",
                 "deadlines.phase_runs"):
        assert f"| `{path}` |" in text, path
    assert "| `cutover.rollout[].hold` | duration **window** | required |" in text
    assert "| `ddl.lock_timeout` | duration **timeout** | `2s` |" in text
    for heading in ("## How an entity maps a table", "## Supported key types, transforms and limits",
                    "## Durations and `time_scale`"):
        assert heading in text
